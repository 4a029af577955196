// A simulated INA228 (harness: sim_host.cpp). Register behaviour from TI's INA228 datasheet (rev. A, May 2022;
// INA228-Q1: SLYS022A), register map 7.6.1: ADC_CONFIG 01h (reset FB68h; MODE bits 15-12, Bh continuous shunt and
// bus; VBUSCT 11-9, VSHCT 8-6, VTCT 5-3, AVG 2-0; conversion times 50, 84, 150, 280, 540, 1052, 2074, 4120 us,
// averages 1 .. 1024), SHUNT_CAL 02h (reset 1000h; CURRENT_LSB = SHUNT_CAL / (13107.2e6 x R_SHUNT) at ADCRANGE 0),
// VSHUNT 04h (20 bits in 23-4, 312.5 nV/bit), VBUS 05h (20 bits in 23-4, 195.3125 uV/bit), CURRENT 07h (20 bits
// in 23-4, two's complement, CURRENT_LSB), POWER 08h (24 bits, 3.2 x CURRENT_LSB W/bit), ENERGY 09h (40 bits
// unsigned, 16 x 3.2 x CURRENT_LSB J/bit, accumulated every conversion cycle, wrapping with ENERGYOF), DIAG_ALRT
// 0Bh (bit 15 ALATCH, bit 11 ENERGYOF, bit 9 MATHOF, bit 1 CNVRF, bit 0 MEMSTAT). With ALATCH set the flags stay
// until DIAG_ALRT is read; without it CNVRF does not wait for a reader (TI E2E thread 1391284), so this model
// never shows it to a poll and a firmware that polls CNVRF must latch it.
// SIM_ENERGY_START (counts) starts the accumulator there, to watch it wrap at 2^40.
#include <math.h>
#include <stdlib.h>

#include "sim.h"

static const double CT_US[8] = {50, 84, 150, 280, 540, 1052, 2074, 4120};
static const double AVG_N[8] = {1, 4, 16, 64, 128, 256, 512, 1024};
static const uint64_t ENERGY_WRAP = 1ULL << 40;
static uint16_t reg_adc = 0xFB68, reg_cal = 0x1000, reg_diag = 0x0001;
static Cycles cycles;
static double energy_counts = -1;  // the accumulator, in counts (fractions kept, as the chip's wider sum does)
static long accumulated = -1;      // the last cycle added to it
static bool mathof = false, energyof = false;  // latched flags (with ALATCH)

static double current_lsb() { return reg_cal / (13107.2e6 * SIM_SHUNT_OHM); }
static int64_t current_counts(double amps) { return llround(amps / current_lsb()); }
static bool overflows(double amps) { return llabs(current_counts(amps)) > 524287; }

static void accumulate() {
  if (energy_counts < 0) {
    const char *e = getenv("SIM_ENERGY_START");
    energy_counts = e ? atof(e) : 0;
  }
  for (long c = accumulated + 1; c <= cycles.done; c++) {
    double amps = sim_amps(cycles.mid_us(c));
    double watts = SIM_VOLTS * amps;
    mathof = mathof || overflows(amps);  // the cycle's current calculation did not fit 20 bits
    energy_counts += watts * cycles.cycle_us * 1e-6 / (16 * 3.2 * current_lsb());
    if (energy_counts >= (double)ENERGY_WRAP) { energy_counts -= (double)ENERGY_WRAP; energyof = true; }
  }
  accumulated = cycles.done;
}

static uint8_t put(uint8_t *out, uint64_t value, uint8_t n) {
  for (uint8_t i = 0; i < n; i++) out[i] = (value >> (8 * (n - 1 - i))) & 0xFF;
  return n;
}

void chip_write(uint8_t reg, uint16_t value) {
  if (reg == 0x01) {
    reg_adc = value;
    cycles.restart((CT_US[(value >> 9) & 7] + CT_US[(value >> 6) & 7]) * AVG_N[value & 7]);
    accumulated = -1;
  }
  if (reg == 0x02) reg_cal = value & 0x7FFF;  // bit 15 is reserved
  if (reg == 0x0B) reg_diag = (uint16_t)((reg_diag & ~0xF000) | (value & 0xF000));  // ALATCH .. APOL
}

uint8_t chip_read(uint8_t reg, uint8_t *out) {
  cycles.tick();
  accumulate();
  double amps = sim_amps(cycles.mid_us());
  int64_t current = current_counts(amps);
  current = current > 524287 ? 524287 : current < -524288 ? -524288 : current;
  switch (reg) {
    case 0x01: return put(out, reg_adc, 2);
    case 0x02: return put(out, reg_cal, 2);
    case 0x04: return put(out, ((uint64_t)llround(amps * SIM_SHUNT_OHM / 312.5e-9) & 0xFFFFF) << 4, 3);
    case 0x05: return put(out, (uint64_t)llround(SIM_VOLTS / 195.3125e-6) << 4, 3);
    case 0x07: return put(out, ((uint64_t)current & 0xFFFFF) << 4, 3);
    case 0x08: return put(out, (uint64_t)llround(SIM_VOLTS * amps / (3.2 * current_lsb())) & 0xFFFFFF, 3);
    case 0x09: return put(out, (uint64_t)energy_counts, 5);
    case 0x0B: {
      bool latch = reg_diag & 0x8000;
      bool ready = cycles.take_ready() && latch;
      bool math = latch ? mathof : overflows(amps);  // transparent: the state of the last cycle
      uint16_t value = (uint16_t)((reg_diag & 0xF000) | (energyof ? 0x0800 : 0) | (math ? 0x0200 : 0) |
                                  (ready ? 0x0002 : 0) | 0x0001);
      mathof = energyof = false;  // a read clears the latched flags
      return put(out, value, 2);
    }
    default: return put(out, 0, 2);
  }
}
