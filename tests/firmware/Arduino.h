// Host build of the ina-serial bridge firmware (tests/test_firmware.py): the slice of the Arduino API it uses.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

uint32_t micros();

struct HostSerial {
  void begin(unsigned long baud);
  int available();
  int read();
  size_t write(const uint8_t *data, size_t n);
};
extern HostSerial Serial;
