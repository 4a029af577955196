// An INA226 on a simulated I2C bus, for running the bridge firmware on the host (tests/test_firmware.py).
// Register behaviour from TI SBOS547: configuration 00h (AVG bits 11-9, VBUSCT 8-6, VSHCT 5-3, MODE 2-0; conversion
// times 140 us .. 8.244 ms, averages 1 .. 1024), shunt 01h (2.5 uV/bit), bus 02h (1.25 mV/bit), current 04h
// (shunt x CAL / 2048), calibration 05h, Mask/Enable 06h (bit 3 CVRF set when a conversion cycle completes and
// cleared by reading the register; bit 2 OVF when the current calculation overflows).
// The load: 5.1 V and 0.6 + 0.3 sin(2 pi t / 0.37 s) A, with a 5 A spike at SIM_SPIKE_MS for 100 ms (overflow).
// SIM_NACK_EVERY=N NACKs every Nth transfer. SIM_RUN_MS ends the run. stderr gets "clock <hz>" and, for every
// conversion-ready read, "ready <cycle end us>".
#include <Arduino.h>
#include <Wire.h>
#include <fcntl.h>
#include <math.h>
#include <time.h>
#include <unistd.h>

HostSerial Serial;
HostWire Wire;

static const double CT_US[8] = {140, 204, 332, 588, 1100, 2116, 4156, 8244};
static const double AVG_N[8] = {1, 4, 16, 64, 128, 256, 512, 1024};
static uint16_t reg_config = 0x4127, reg_cal = 0;
static double config_at_us = 0;
static long last_cycle = -1, latched_cycle = -1;
static uint8_t pointer = 0, out[4], out_n = 0, out_i = 0, tx[4], tx_n = 0;
static long transfers = 0, nack_every = 0;
static double spike_ms = -1;

uint32_t micros() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  static double t0 = ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
  return (uint32_t)(ts.tv_sec * 1e6 + ts.tv_nsec / 1e3 - t0);
}

void HostSerial::begin(unsigned long) { fcntl(0, F_SETFL, O_NONBLOCK); }
int HostSerial::available() {
  int c = getchar();
  if (c == EOF) { clearerr(stdin); return 0; }
  ungetc(c, stdin);
  return 1;
}
int HostSerial::read() { return getchar(); }
size_t HostSerial::write(const uint8_t *data, size_t n) { fwrite(data, 1, n, stdout); fflush(stdout); return n; }

static double cycle_us() {
  return (CT_US[(reg_config >> 3) & 7] + CT_US[(reg_config >> 6) & 7]) * AVG_N[(reg_config >> 9) & 7];
}

static double amps_at(double t_us) {
  if (spike_ms >= 0 && t_us >= spike_ms * 1e3 && t_us < spike_ms * 1e3 + 100e3) return 5.0;
  return 0.6 + 0.3 * sin(2 * M_PI * t_us / 370e3);
}

static void registers(uint8_t reg) {
  long cycle = (long)((micros() - config_at_us) / cycle_us()) - 1;  // the last completed cycle
  double mid_us = config_at_us + (cycle + 0.5) * cycle_us();
  int32_t shunt = lround(amps_at(mid_us) * 0.010 / 2.5e-6);  // 10 mOhm shunt
  int32_t current = (int32_t)((int64_t)shunt * reg_cal / 2048);
  uint16_t value = 0;
  if (reg == 0x06) {
    bool ready = cycle > last_cycle;
    if (ready) { last_cycle = latched_cycle = cycle; fprintf(stderr, "ready %.0f\n", config_at_us + (cycle + 1) * cycle_us()); }
    value = (ready ? 0x0008 : 0) | (current > 32767 ? 0x0004 : 0);
  } else if (reg == 0x01) value = (uint16_t)shunt;
  else if (reg == 0x02) value = (uint16_t)lround(5.1 / 1.25e-3);
  else if (reg == 0x04) value = (uint16_t)(current > 32767 ? 32767 : current);
  else if (reg == 0x00) value = reg_config;
  else if (reg == 0x05) value = reg_cal;
  out[0] = value >> 8; out[1] = value & 0xFF; out_n = 2; out_i = 0;
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
  if (tx_n == 3) {
    uint16_t v = (tx[1] << 8) | tx[2];
    if (pointer == 0x00) { reg_config = v; config_at_us = micros(); last_cycle = -1; }
    if (pointer == 0x05) reg_cal = v;
  }
  return 0;
}
uint8_t HostWire::requestFrom(int, int n) {
  registers(pointer);
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
