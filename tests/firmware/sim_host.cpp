// The host harness for the bridge firmware (tests/test_firmware.py): micros() from CLOCK_MONOTONIC, Serial on
// stdin/stdout, an I2C bus with one simulated sensor on it (sim.h). SIM_NACK_EVERY=N NACKs every Nth transfer,
// SIM_SPIKE_MS puts a 5 A spike in the load, SIM_RUN_MS ends the run. stderr gets "clock <hz>" for every I2C
// clock set.
#include <Arduino.h>
#include <Wire.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <time.h>
#include <unistd.h>

#include "sim.h"

HostSerial Serial;
HostWire Wire;

static uint8_t pointer = 0, out[8], out_n = 0, out_i = 0, tx[4], tx_n = 0;
static long transfers = 0, nack_every = 0;
static double spike_ms = -1;

uint32_t micros() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  static double t0 = ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
  return (uint32_t)(ts.tv_sec * 1e6 + ts.tv_nsec / 1e3 - t0);
}

double sim_amps(double t_us) {
  if (spike_ms >= 0 && t_us >= spike_ms * 1e3 && t_us < spike_ms * 1e3 + 100e3) return 5.0;
  return 0.6 + 0.3 * sin(2 * M_PI * t_us / 370e3);
}

void Cycles::restart(double cycle) { start_us = micros(); cycle_us = cycle; seen = done = -1; }
void Cycles::tick() { done = (long)((micros() - start_us) / cycle_us) - 1; }
double Cycles::mid_us(long cycle) const { return start_us + (cycle + 0.5) * cycle_us; }
bool Cycles::take_ready() {
  if (done <= seen) return false;
  seen = done;
  fprintf(stderr, "ready %.0f\n", start_us + (done + 1) * cycle_us);
  return true;
}

void HostSerial::begin(unsigned long) { fcntl(0, F_SETFL, O_NONBLOCK); }
int HostSerial::available() {
  int c = getchar();
  if (c == EOF) { clearerr(stdin); return 0; }
  ungetc(c, stdin);
  return 1;
}
int HostSerial::read() { return getchar(); }
// Blocks while the host is not reading, as a USB CDC port's write does (stdout shares stdin's O_NONBLOCK when both
// are one pty): bytes are never dropped.
size_t HostSerial::write(const uint8_t *data, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t k = ::write(1, data + done, n - done);
    if (k > 0) done += (size_t)k;
    else if (k < 0 && errno != EAGAIN && errno != EINTR) return done;  // the host closed the port
    else usleep(200);
  }
  return n;
}

void HostWire::begin() {
  const char *e = getenv("SIM_NACK_EVERY");
  nack_every = e ? atol(e) : 0;
  e = getenv("SIM_SPIKE_MS");
  spike_ms = e ? atof(e) : -1;
}
void HostWire::setClock(uint32_t hz) { fprintf(stderr, "clock %u\n", hz); }
void HostWire::beginTransmission(uint8_t) { tx_n = 0; }
size_t HostWire::write(uint8_t byte) { if (tx_n < sizeof tx) tx[tx_n++] = byte; return 1; }
uint8_t HostWire::endTransmission(bool) {
  if (nack_every && ++transfers % nack_every == 0) return 2;  // address NACK
  pointer = tx[0];
  if (tx_n == 3) chip_write(pointer, (uint16_t)((tx[1] << 8) | tx[2]));
  return 0;
}
uint8_t HostWire::requestFrom(int, int n) {
  out_n = chip_read(pointer, out);
  out_i = 0;
  return (uint8_t)(n <= out_n ? n : 0);
}
int HostWire::read() { return out_i < out_n ? out[out_i++] : -1; }

void setup();
void loop();

int main() {
  const char *e = getenv("SIM_RUN_MS");
  double run_us = (e ? atof(e) : 1000) * 1e3;
  setup();
  while (micros() < run_us) loop();
  return 0;
}
