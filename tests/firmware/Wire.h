// Host build of the firmware: an I2C bus with one simulated sensor on it (sim.h).
#pragma once
#include <cstdint>

struct HostWire {
  void begin();
  void setClock(uint32_t hz);
  void beginTransmission(uint8_t addr);
  size_t write(uint8_t byte);
  uint8_t endTransmission(bool stop = true);
  uint8_t requestFrom(int addr, int n);
  int read();
};
extern HostWire Wire;
