// Host build of the firmware: what every simulated sensor (ina219.cpp, ina226.cpp, ina228.cpp) shares with the
// harness (sim_host.cpp). The harness owns the clock, the serial port, the I2C transport, the load and the faults;
// a sensor file owns only its register map, written from its datasheet's register tables.
#pragma once
#include <cstdint>
#include <cstdio>

// The load on the Pi's 5 V line: 5.1 V and 0.6 + 0.3 sin(2 pi t / 0.37 s) A, with a 5 A spike from SIM_SPIKE_MS
// for 100 ms; the shunt is 10 mOhm.
constexpr double SIM_VOLTS = 5.1;
constexpr double SIM_SHUNT_OHM = 0.010;
double sim_amps(double t_us);

// Continuous conversion cycles of cycle_us from the last configuration write on. tick() fixes, for one register
// access, which cycle was the last to complete (done), so every value read in that access belongs to the same
// cycle. take_ready() is true once per completed cycle (and says on stderr "ready <cycle end us>", which the test
// compares with the stamps); mid_us() is the middle of the last completed cycle, where its readings were taken.
struct Cycles {
  double start_us = 0, cycle_us = 1000;
  long seen = -1, done = -1;
  void restart(double cycle);
  void tick();
  double mid_us(long cycle) const;
  double mid_us() const { return mid_us(done); }
  bool take_ready();
};

// A sensor: a 16-bit register write, and a register read (returns its bytes, MSB first).
void chip_write(uint8_t reg, uint16_t value);
uint8_t chip_read(uint8_t reg, uint8_t *out);
