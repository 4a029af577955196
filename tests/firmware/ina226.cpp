// A simulated INA226 (harness: sim_host.cpp). Register behaviour from TI SBOS547B: configuration 00h (AVG bits
// 11-9, VBUSCT 8-6, VSHCT 5-3, MODE 2-0; reset 4127h; conversion times 140 us .. 8.244 ms, averages 1 .. 1024:
// 6.5 Electrical Characteristics and the configuration register's tables), shunt 01h (2.5 uV/bit), bus 02h
// (1.25 mV/bit), current 04h (shunt x CAL / 2048), calibration 05h, Mask/Enable 06h (bit 3 CVRF set when a
// conversion cycle completes and cleared by reading the register; bit 2 OVF when the current calculation
// overflows).
#include <math.h>

#include "sim.h"

static const double CT_US[8] = {140, 204, 332, 588, 1100, 2116, 4156, 8244};
static const double AVG_N[8] = {1, 4, 16, 64, 128, 256, 512, 1024};
static uint16_t reg_config = 0x4127, reg_cal = 0;
static Cycles cycles;

static double cycle_us(uint16_t config) {
  return (CT_US[(config >> 3) & 7] + CT_US[(config >> 6) & 7]) * AVG_N[(config >> 9) & 7];
}

void chip_write(uint8_t reg, uint16_t value) {
  if (reg == 0x00) { reg_config = value; cycles.restart(cycle_us(value)); }
  if (reg == 0x05) reg_cal = value;
}

uint8_t chip_read(uint8_t reg, uint8_t *out) {
  cycles.tick();
  int32_t shunt = lround(sim_amps(cycles.mid_us()) * SIM_SHUNT_OHM / 2.5e-6);
  int32_t current = (int32_t)((int64_t)shunt * reg_cal / 2048);
  uint16_t value = 0;
  if (reg == 0x06) value = (cycles.take_ready() ? 0x0008 : 0) | (current > 32767 ? 0x0004 : 0);
  else if (reg == 0x01) value = (uint16_t)shunt;
  else if (reg == 0x02) value = (uint16_t)lround(SIM_VOLTS / 1.25e-3);
  else if (reg == 0x04) value = (uint16_t)(current > 32767 ? 32767 : current);
  else if (reg == 0x00) value = reg_config;
  else if (reg == 0x05) value = reg_cal;
  out[0] = value >> 8;
  out[1] = value & 0xFF;
  return 2;
}
