// ina-serial bridge firmware, protocol v1 (see bench/meter/drivers/ina_serial.py).
// Board: Raspberry Pi Pico (RP2040, arduino-pico core) or any Arduino with USB CDC.
// Sensor: INA226 (default) or INA219 on I2C, shunt in the Pi's 5 V supply line (high side).
//
// Output, one line per conversion:
//   D,<seq>,<t_us>,<bus_mV>,<current_uA>*<CRC16 hex>\n
// Header, at boot and in reply to "?\n":
//   #H,1,<firmware>,<chip>,<device_id>,<shunt_uohm>,<rate_hz>*<CRC16 hex>\n
// Commands: "?\n" header, "R<hz>\n" set the sample rate (1..2000).
// CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over every byte before '*'.
// t_us is micros() when the conversion was read: the host maps it to CLOCK_MONOTONIC with drift correction.

#include <Arduino.h>
#include <Wire.h>

#define FIRMWARE "ina-bridge-1.0"
#define USE_INA226 1            // 0 for an INA219
#define INA_ADDR 0x40
#define SHUNT_UOHM 10000UL      // 10 mOhm shunt
#define CURRENT_LSB_UA 100L     // 100 uA per bit: up to 3.2 A

static uint32_t seq = 0;
static uint32_t rate_hz = 1000;
static uint32_t period_us = 1000;
static uint32_t next_us = 0;
static char device_id[24];
static char cmd[16];
static uint8_t cmd_len = 0;

static uint16_t crc16(const char *p, size_t n) {
  uint16_t crc = 0xFFFF;
  while (n--) {
    crc ^= (uint16_t)(uint8_t)(*p++) << 8;
    for (uint8_t i = 0; i < 8; i++) crc = (crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1;
  }
  return crc;
}

static void send_framed(char *buf, int len) {
  uint16_t crc = crc16(buf, len);
  len += snprintf(buf + len, 8, "*%04X\n", crc);
  Serial.write((const uint8_t *)buf, len);
}

static void write_reg(uint8_t reg, uint16_t value) {
  Wire.beginTransmission(INA_ADDR);
  Wire.write(reg);
  Wire.write(value >> 8);
  Wire.write(value & 0xFF);
  Wire.endTransmission();
}

static int16_t read_reg(uint8_t reg) {
  Wire.beginTransmission(INA_ADDR);
  Wire.write(reg);
  Wire.endTransmission(false);
  Wire.requestFrom((int)INA_ADDR, 2);
  uint16_t hi = Wire.read(), lo = Wire.read();
  return (int16_t)((hi << 8) | lo);
}

static void configure_sensor() {
#if USE_INA226
  // Continuous shunt+bus, 140 us conversions, no averaging: ~3.5 kHz raw, we read at rate_hz.
  write_reg(0x00, 0x4000 | (0 << 9) | (1 << 6) | (1 << 3) | 0x7);
  // CAL = 0.00512 / (Current_LSB * R_shunt) with LSB in A and R in ohm.
  write_reg(0x05, (uint16_t)(0.00512 / ((CURRENT_LSB_UA * 1e-6) * (SHUNT_UOHM * 1e-6))));
#else
  write_reg(0x00, 0x399F);  // 32 V, +-320 mV, 12-bit, continuous
  write_reg(0x05, (uint16_t)(0.04096 / ((CURRENT_LSB_UA * 1e-6) * (SHUNT_UOHM * 1e-6))));
#endif
}

static void send_header() {
  char buf[96];
  int len = snprintf(buf, sizeof buf, "#H,1,%s,%s,%s,%lu,%lu", FIRMWARE, USE_INA226 ? "INA226" : "INA219",
                     device_id, (unsigned long)SHUNT_UOHM, (unsigned long)rate_hz);
  send_framed(buf, len);
}

static void handle_command() {
  cmd[cmd_len] = 0;
  if (cmd[0] == '?') {
    send_header();
  } else if (cmd[0] == 'R') {
    long hz = atol(cmd + 1);
    if (hz >= 1 && hz <= 2000) {
      rate_hz = hz;
      period_us = 1000000UL / rate_hz;
      send_header();
    }
  }
  cmd_len = 0;
}

void setup() {
  Serial.begin(115200);
  Wire.begin();
  Wire.setClock(1000000);
#if defined(ARDUINO_ARCH_RP2040)
  pico_unique_board_id_t id;
  pico_get_unique_board_id(&id);
  snprintf(device_id, sizeof device_id, "PICO-%02X%02X%02X%02X", id.id[4], id.id[5], id.id[6], id.id[7]);
#else
  snprintf(device_id, sizeof device_id, "INA-BRIDGE-0001");
#endif
  configure_sensor();
  next_us = micros();
  send_header();
}

void loop() {
  while (Serial.available()) {
    char c = Serial.read();
    if (c == '\n' || c == '\r') {
      if (cmd_len) handle_command();
    } else if (cmd_len < sizeof cmd - 1) {
      cmd[cmd_len++] = c;
    }
  }
  uint32_t now = micros();
  if ((int32_t)(now - next_us) < 0) return;
  next_us += period_us;
  if ((int32_t)(now - next_us) > (int32_t)(10 * period_us)) next_us = now + period_us;  // fell behind: resync

  int16_t bus_raw = read_reg(0x02);
  int16_t cur_raw = read_reg(0x04);
  uint32_t t_us = micros();
#if USE_INA226
  long bus_mv = ((long)bus_raw * 125L) / 100L;  // 1.25 mV per bit
#else
  long bus_mv = ((long)(bus_raw >> 3)) * 4L;     // 4 mV per bit
#endif
  long cur_ua = (long)cur_raw * CURRENT_LSB_UA;
  seq++;
  char buf[64];
  int len = snprintf(buf, sizeof buf, "D,%lu,%lu,%ld,%ld", (unsigned long)seq, (unsigned long)t_us, bus_mv, cur_ua);
  send_framed(buf, len);
}
