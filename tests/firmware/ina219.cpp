// A simulated INA219 (harness: sim_host.cpp). Register behaviour from TI SBOS448 (rev. F/G): configuration 00h
// (reset 399Fh; BRNG bit 13, PG bits 12-11 with ranges +-40/80/160/320 mV, BADC bits 10-7, SADC bits 6-3, MODE
// bits 2-0; ADC settings table: 9/10/11/12 bit 84/148/276/532 us, 2..128 samples 1.06..68.10 ms), shunt 01h
// (10 uV/bit, the ADC's full scale at the PGA range), bus 02h (BD12..0 in bits 15-3 at 4 mV/bit, bit 1 CNVR set
// after all conversions and cleared by reading the power register 03h, bit 0 OVF when the current or power
// calculation is out of range), power 03h (current x bus / 5000), current 04h (shunt x CAL / 4096), calibration
// 05h.
#include <math.h>

#include "sim.h"

static uint16_t reg_config = 0x399F, reg_cal = 0;
static Cycles cycles;

static double adc_us(uint8_t code) {  // a BADC/SADC code's conversion time
  static const double BITS_US[4] = {84, 148, 276, 532};
  static const double AVG_US[8] = {532, 1060, 2130, 4260, 8510, 17020, 34050, 68100};
  return (code & 0x8) ? AVG_US[code & 7] : BITS_US[code & 3];
}

void chip_write(uint8_t reg, uint16_t value) {
  if (reg == 0x00) { reg_config = value; cycles.restart(adc_us((value >> 3) & 0xF) + adc_us((value >> 7) & 0xF)); }
  if (reg == 0x05) reg_cal = value & 0xFFFE;  // bit 0 is not used
}

uint8_t chip_read(uint8_t reg, uint8_t *out) {
  cycles.tick();
  int32_t full_scale = 4000 << ((reg_config >> 11) & 3);  // 40 mV at PGA /1, doubling per step
  int32_t shunt = lround(sim_amps(cycles.mid_us()) * SIM_SHUNT_OHM / 10e-6);
  shunt = shunt > full_scale ? full_scale : shunt < -full_scale ? -full_scale : shunt;  // the ADC clips
  int32_t bus = lround(SIM_VOLTS / 4e-3);
  int32_t current = (int32_t)((int64_t)shunt * reg_cal / 4096);
  int32_t power = (int32_t)((int64_t)current * bus / 5000);
  bool ovf = current > 32767 || current < -32768 || power > 65535;
  uint16_t value = 0;
  if (reg == 0x02) {
    bool ready = cycles.done > cycles.seen;  // reading the bus register leaves CNVR set
    value = (uint16_t)((bus << 3) | (ready ? 0x2 : 0) | (ovf ? 0x1 : 0));
  } else if (reg == 0x03) {
    cycles.take_ready();  // reading power clears CNVR
    value = (uint16_t)(ovf ? 0xFFFF : power);
  } else if (reg == 0x01) value = (uint16_t)(int16_t)shunt;
  else if (reg == 0x04) value = (uint16_t)(int16_t)(current > 32767 ? 32767 : current);
  else if (reg == 0x00) value = reg_config;
  else if (reg == 0x05) value = reg_cal;
  out[0] = value >> 8;
  out[1] = value & 0xFF;
  return 2;
}
