// ina-serial bridge firmware, protocol 2 (wire formats: bench/meter/drivers/ina_wire.py; driver: ina_serial.py).
// Board: Raspberry Pi Pico (RP2040, arduino-pico core) or any Arduino with USB CDC.
// Sensor on I2C at 400 kHz (fast mode, the INA219/INA226/INA228 limit without high-speed mode entry), shunt in the
// Pi's 5 V supply line (high side). Build with -DCHIP=CHIP_INA219 or -DCHIP=CHIP_INA228 for the other sensors.
//
// What each sample is: the sensor converts continuously (shunt, then bus, again and again) with hardware
// averaging; the firmware waits for its conversion-ready flag, reads bus voltage and current of that same
// conversion, and stamps the sample at the middle of the window those conversions covered (the conversion age
// subtracted), so the host places it where it was measured. A failed I2C transfer or an overflowing current is
// sent as an error record, never as a number. The rate is what the conversion window allows, nearest R<hz>.
//
// Text output (format "text"), one line per sample:
//   D,<seq>,<t_us>,<bus_mV>,<current_uA>*<CRC16 hex>\n      E,<seq>,<t_us>,<flags>*<CRC16 hex>\n
// Binary output (format "binary"): blocks A5 5A | n | flags | seq u32 | n x (t_us u32, uA i32, mV u16, status u8)
//   | [energy u64] | CRC16 (little-endian; CRC over n .. the last payload byte).
// Header, at boot and in reply to "?", "R" and "F":
//   #H,2,<firmware>,<chip>,<device_id>,<shunt_uohm>,<rate_hz>,<window_us>,<format>,<energy_uj_per_lsb>*<CRC>\n
// Commands: "?\n" header, "R<hz>\n" sample rate (1..2000), "Fb\n" binary blocks, "Ft\n" text lines.
// CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF).

#include <Arduino.h>
#include <Wire.h>

#define CHIP_INA226 1
#define CHIP_INA219 2
#define CHIP_INA228 3
#ifndef CHIP
#define CHIP CHIP_INA226
#endif

#define FIRMWARE "ina-bridge-2.0"
#define INA_ADDR 0x40
#define I2C_HZ 400000UL
#define SHUNT_UOHM 10000UL     // 10 mOhm shunt
#define STATUS_I2C_ERROR 1
#define STATUS_OVERFLOW 2
#define BLOCK_MAX 32           // records per binary block (352 bytes)
#define BLOCK_MAX_US 20000UL   // or 20 ms, whichever comes first

static uint32_t seq = 0;
static uint32_t rate_hz = 1000;
static uint32_t window_us = 0;
static bool binary = false;
static char device_id[24];
static char cmd[16];
static uint8_t cmd_len = 0;

static uint8_t block[8 + BLOCK_MAX * 11 + 8 + 2];
static uint8_t block_n = 0;
static uint32_t block_seq = 0;
static uint32_t block_t0 = 0;

static uint16_t crc16_update(uint16_t crc, const uint8_t *p, size_t n) {
  while (n--) {
    crc ^= (uint16_t)(*p++) << 8;
    for (uint8_t i = 0; i < 8; i++) crc = (crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1;
  }
  return crc;
}

// -- I2C: every transfer reports whether it worked ---------------------------------------------------------------

static bool write_reg(uint8_t reg, uint16_t value) {
  Wire.beginTransmission(INA_ADDR);
  Wire.write(reg);
  Wire.write(value >> 8);
  Wire.write(value & 0xFF);
  return Wire.endTransmission() == 0;
}

static bool read_bytes(uint8_t reg, uint8_t *out, uint8_t n) {
  Wire.beginTransmission(INA_ADDR);
  Wire.write(reg);
  if (Wire.endTransmission(false) != 0) return false;
  if (Wire.requestFrom((int)INA_ADDR, (int)n) != n) return false;
  for (uint8_t i = 0; i < n; i++) out[i] = Wire.read();
  return true;
}

static bool read_u16(uint8_t reg, uint16_t *value) {
  uint8_t b[2];
  if (!read_bytes(reg, b, 2)) return false;
  *value = ((uint16_t)b[0] << 8) | b[1];
  return true;
}

// Poll a status register until ``ready_bit`` is set (conversion ready); false on an I2C failure or when the chip
// has not finished within four windows (it stopped converting).
static bool wait_ready(uint8_t reg, uint16_t ready_bit, uint16_t *value, uint32_t *t_ready) {
  uint32_t t0 = micros();
  for (;;) {
    bool late = (uint32_t)(micros() - t0) >= 4 * window_us + 1000;  // checked before the read: the last read counts
    if (!read_u16(reg, value)) break;
    if (*value & ready_bit) { *t_ready = micros(); return true; }
    if (late) break;
  }
  *t_ready = micros();
  return false;
}

#if CHIP == CHIP_INA226 || CHIP == CHIP_INA228
// The largest window (shunt + bus conversion, times the averaging count) that fits the period; among equals, the
// one that spends most of it on the shunt. Codes index the chip's conversion-time and averaging tables.
static uint32_t best_setting(const uint16_t *ct_us, const uint16_t *avg_n, uint32_t period_us, uint8_t *s_code,
                             uint8_t *b_code, uint8_t *a_code) {
  uint32_t best_w = 0, best_sh = 0;
  *s_code = *b_code = *a_code = 0;
  for (uint8_t a = 0; a < 8; a++)
    for (uint8_t s = 0; s < 8; s++)
      for (uint8_t b = 0; b < 8; b++) {
        uint32_t w = (uint32_t)(ct_us[s] + ct_us[b]) * avg_n[a], sh = (uint32_t)ct_us[s] * avg_n[a];
        if (w <= period_us && (w > best_w || (w == best_w && sh > best_sh))) {
          best_w = w; best_sh = sh; *s_code = s; *b_code = b; *a_code = a;
        }
      }
  return best_w ? best_w : 2UL * ct_us[0];  // faster than the chip can go: its fastest setting
}
#endif

// -- the sensors ---------------------------------------------------------------------------------------------------
// Each chip: configure(period_us) picks conversion settings whose window fits the period, and sets window_us;
// sample() waits for conversion-ready and reads one sample: returns a status (0 = valid).

#if CHIP == CHIP_INA226
// TI SBOS547B (6.5 Electrical Characteristics, tCT): conversion times (CT codes 0..7) and averaging counts (AVG codes 0..7); Mask/Enable (06h) bit 3 CVRF
// (cleared by reading it), bit 2 OVF; CAL = 0.00512 / (Current_LSB * R_shunt). Current LSB 125 uA: full scale
// 4.096 A, above the Pi's 3 A supply; past it OVF is set instead of the current register wrapping silently.
#define CHIP_NAME "INA226"
#define CURRENT_LSB_NA 125000L
static const uint16_t CT_US[8] = {140, 204, 332, 588, 1100, 2116, 4156, 8244};
static const uint16_t AVG_N[8] = {1, 4, 16, 64, 128, 256, 512, 1024};

static bool configure(uint32_t period_us) {
  uint8_t s, b, a;
  window_us = best_setting(CT_US, AVG_N, period_us, &s, &b, &a);
  return write_reg(0x00, 0x4000 | (a << 9) | (b << 6) | (s << 3) | 0x7) &&
         write_reg(0x05, (uint16_t)(0.00512 / ((CURRENT_LSB_NA * 1e-9) * (SHUNT_UOHM * 1e-6))));
}

static uint8_t sample(long *bus_mv, long *cur_ua, uint32_t *t_ready) {
  uint16_t mask, bus, cur;
  if (!wait_ready(0x06, 0x0008, &mask, t_ready)) return STATUS_I2C_ERROR;  // reading Mask/Enable clears CVRF
  if (!read_u16(0x02, &bus) || !read_u16(0x04, &cur)) return STATUS_I2C_ERROR;
  if (mask & 0x0004) return STATUS_OVERFLOW;
  *bus_mv = ((long)bus * 125L) / 100L;  // 1.25 mV per bit
  *cur_ua = ((long)(int16_t)cur * CURRENT_LSB_NA) / 1000L;
  return 0;
}
#define ENERGY_UJ_PER_LSB "0"
static bool read_energy(uint64_t *raw) { (void)raw; return false; }

#elif CHIP == CHIP_INA219
// TI SBOS448 (rev. F/G): configuration register table "ADC Settings" (SADC/BADC codes 0x8..0xF: 1..128 samples of
// 12 bits, 532 us .. 68.10 ms; 0x0 is 9 bit, 84 us); bus register (02h) BD12..0 in bits 15-3 at 4 mV, bit 1 CNVR,
// cleared by reading the power register (03h), bit 0 OVF (current or power calculation out of range); Current =
// Shunt x CAL / 4096, CAL = 0.04096 / (Current_LSB x R_shunt). PGA /1 (+-40 mV: 4 A at 10 mOhm) and Current LSB
// 125 uA (CAL 32768, current = 8 x shunt counts): the shunt ADC clips at its 40 mV full scale (4000 counts) before
// any calculation overflows, so OVF never says so; a current at the clip (32000 counts) is reported as an overflow.
#define CHIP_NAME "INA219"
#define CURRENT_LSB_NA 125000L
#define CLIP_COUNTS 32000  // 4000 shunt counts (40 mV) x 8
static const uint32_t SADC_US[8] = {532, 1060, 2130, 4260, 8510, 17020, 34050, 68100};

static bool configure(uint32_t period_us) {
  uint8_t n = 0;
  while (n < 7 && SADC_US[n + 1] + 84 <= period_us) n++;
  window_us = SADC_US[n] + 84;  // shunt averaging, then one 9-bit bus conversion (the bus is steady)
  uint16_t config = (0 << 13) | (0 << 11) | (0x0 << 7) | ((0x8 | n) << 3) | 0x7;  // 16 V, PGA /1, continuous
  return write_reg(0x00, config) &&
         write_reg(0x05, (uint16_t)(0.04096 / ((CURRENT_LSB_NA * 1e-9) * (SHUNT_UOHM * 1e-6))));
}

static uint8_t sample(long *bus_mv, long *cur_ua, uint32_t *t_ready) {
  uint16_t bus, cur, power;
  if (!wait_ready(0x02, 0x0002, &bus, t_ready)) return STATUS_I2C_ERROR;
  if (!read_u16(0x04, &cur) || !read_u16(0x03, &power)) return STATUS_I2C_ERROR;  // reading power clears CNVR
  if ((bus & 0x0001) || (int16_t)cur >= CLIP_COUNTS || (int16_t)cur <= -CLIP_COUNTS) return STATUS_OVERFLOW;
  *bus_mv = (long)(bus >> 3) * 4L;  // 4 mV per bit
  *cur_ua = ((long)(int16_t)cur * CURRENT_LSB_NA) / 1000L;
  return 0;
}
#define ENERGY_UJ_PER_LSB "0"
static bool read_energy(uint64_t *raw) { (void)raw; return false; }

#elif CHIP == CHIP_INA228
// TI INA228 datasheet (rev. A, May 2022; INA228-Q1: SLYS022A), register map 7.6.1: ADC_CONFIG (01h) MODE[15:12]
// 0xB continuous shunt+bus, VBUSCT[11:9], VSHCT[8:6], AVG[2:0]; conversion times 50..4120 us; SHUNT_CAL (02h) =
// 13107.2e6 * CURRENT_LSB * R_SHUNT; VBUS (05h) and CURRENT (07h) 20 bits in 24 (LSB 195.3125 uV; CURRENT_LSB);
// ENERGY (09h) 40 bits, J = 16 * 3.2 * CURRENT_LSB * ENERGY (the host unwraps it); DIAG_ALRT (0Bh) bit 15 ALATCH,
// bit 9 MATHOF, bit 1 CNVRF. ALATCH is set so CNVRF waits for the poll that reads it (transparent, it need not:
// TI E2E thread 1391284). Current LSB 2^-17 A = 7.63 uA (4 A full scale at 20 bits): the LSB for which SHUNT_CAL
// is a whole number at 10 mOhm (1000), so the register holds it exactly (10 uA would need 1310.72, 0.055% low).
#define CHIP_NAME "INA228"
#define CURRENT_LSB_A (1.0 / 131072)
static const uint16_t CT_US[8] = {50, 84, 150, 280, 540, 1052, 2074, 4120};
static const uint16_t AVG_N[8] = {1, 4, 16, 64, 128, 256, 512, 1024};

static bool configure(uint32_t period_us) {
  uint8_t s, b, a;
  window_us = best_setting(CT_US, AVG_N, period_us, &s, &b, &a);
  return write_reg(0x0B, 0x8000) && write_reg(0x01, (0xB << 12) | (b << 9) | (s << 6) | a) &&
         write_reg(0x02, (uint16_t)(13107.2e6 * CURRENT_LSB_A * (SHUNT_UOHM * 1e-6) + 0.5));
}

static bool read_u24(uint8_t reg, uint32_t *value) {
  uint8_t b[3];
  if (!read_bytes(reg, b, 3)) return false;
  *value = ((uint32_t)b[0] << 16) | ((uint32_t)b[1] << 8) | b[2];
  return true;
}

static uint8_t sample(long *bus_mv, long *cur_ua, uint32_t *t_ready) {
  uint16_t diag;
  if (!wait_ready(0x0B, 0x0002, &diag, t_ready)) return STATUS_I2C_ERROR;
  uint32_t bus, cur;
  if (!read_u24(0x05, &bus) || !read_u24(0x07, &cur)) return STATUS_I2C_ERROR;
  if (diag & 0x0200) return STATUS_OVERFLOW;
  int32_t cur20 = (int32_t)(cur << 8) >> 12;  // sign-extend the 20-bit value in bits 23..4
  *bus_mv = (long)(((bus >> 4) * 1953125ULL) / 10000000ULL);  // 195.3125 uV per bit
  *cur_ua = (long)(cur20 * (CURRENT_LSB_A * 1e6));
  return 0;
}
#define ENERGY_UJ_PER_LSB "390.625"  // 16 * 3.2 * CURRENT_LSB J per count
static bool read_energy(uint64_t *raw) {
  uint8_t b[5];
  if (!read_bytes(0x09, b, 5)) return false;
  *raw = 0;
  for (uint8_t i = 0; i < 5; i++) *raw = (*raw << 8) | b[i];
  return true;
}
#endif

// -- output --------------------------------------------------------------------------------------------------------

static void send_framed(char *buf, int len) {
  uint16_t crc = crc16_update(0xFFFF, (const uint8_t *)buf, len);
  len += snprintf(buf + len, 8, "*%04X\n", crc);
  Serial.write((const uint8_t *)buf, len);
}

static void put_le(uint8_t *p, uint32_t v, uint8_t n) {
  for (uint8_t i = 0; i < n; i++) p[i] = (v >> (8 * i)) & 0xFF;
}

static void flush_block() {
  if (!block_n) return;
  uint16_t len = 8 + block_n * 11;
  uint64_t energy;
  bool with_energy = read_energy(&energy);
  if (with_energy) {
    for (uint8_t i = 0; i < 8; i++) block[len + i] = (energy >> (8 * i)) & 0xFF;
    len += 8;
  }
  block[0] = 0xA5; block[1] = 0x5A; block[2] = block_n; block[3] = with_energy ? 1 : 0;
  put_le(block + 4, block_seq, 4);
  uint16_t crc = crc16_update(0xFFFF, block + 2, len - 2);
  block[len] = crc & 0xFF; block[len + 1] = crc >> 8;
  Serial.write(block, len + 2);
  block_n = 0;
}

static void send_header() {
  flush_block();  // keep the order of what the host reads
  char buf[128];
  int len = snprintf(buf, sizeof buf, "#H,2,%s,%s,%s,%lu,%lu,%lu,%s,%s", FIRMWARE, CHIP_NAME, device_id,
                     (unsigned long)SHUNT_UOHM, (unsigned long)(1000000UL / window_us), (unsigned long)window_us,
                     binary ? "binary" : "text", ENERGY_UJ_PER_LSB);
  send_framed(buf, len);
}

static void send_sample(uint32_t t_us, long bus_mv, long cur_ua, uint8_t status) {
  seq++;
  if (!binary) {
    char buf[64];
    int len = status ? snprintf(buf, sizeof buf, "E,%lu,%lu,%u", (unsigned long)seq, (unsigned long)t_us, status)
                     : snprintf(buf, sizeof buf, "D,%lu,%lu,%ld,%ld", (unsigned long)seq, (unsigned long)t_us,
                                bus_mv, cur_ua);
    send_framed(buf, len);
    return;
  }
  if (!block_n) { block_seq = seq; block_t0 = micros(); }
  uint8_t *r = block + 8 + block_n * 11;
  put_le(r, t_us, 4);
  put_le(r + 4, (uint32_t)(status ? 0 : cur_ua), 4);
  put_le(r + 8, (uint32_t)(status ? 0 : bus_mv), 2);
  r[10] = status;
  if (++block_n == BLOCK_MAX) flush_block();
}

static void handle_command() {
  cmd[cmd_len] = 0;
  if (cmd[0] == 'R') {
    long hz = atol(cmd + 1);
    if (hz >= 1 && hz <= 2000) {
      rate_hz = hz;
      configure(1000000UL / rate_hz);
    }
  } else if (cmd[0] == 'F') {
    flush_block();
    binary = cmd[1] == 'b';
  }
  if (cmd[0] == '?' || cmd[0] == 'R' || cmd[0] == 'F') send_header();
  cmd_len = 0;
}

void setup() {
  Serial.begin(115200);
  Wire.begin();
  Wire.setClock(I2C_HZ);
#if defined(ARDUINO_ARCH_RP2040)
  pico_unique_board_id_t id;
  pico_get_unique_board_id(&id);
  snprintf(device_id, sizeof device_id, "PICO-%02X%02X%02X%02X", id.id[4], id.id[5], id.id[6], id.id[7]);
#else
  snprintf(device_id, sizeof device_id, "INA-BRIDGE-0001");
#endif
  configure(1000000UL / rate_hz);
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
  long bus_mv = 0, cur_ua = 0;
  uint32_t t_ready;
  uint8_t status = sample(&bus_mv, &cur_ua, &t_ready);
  send_sample(t_ready - window_us / 2, bus_mv, cur_ua, status);  // the middle of the window just converted
  if (block_n && (uint32_t)(micros() - block_t0) >= BLOCK_MAX_US) flush_block();
}
