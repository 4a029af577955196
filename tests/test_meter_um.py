"""RDTech UM meters: frames built from the published protocol tables, and the driver over a real pty.

Facts, with their sources:
- sigrok libsigrok src/hardware/rdtech-um/protocol.h: model ids UM24C 0x0963, UM25C 0x09c9, UM34C 0x0d4c.
- sigrok rdtech-um/protocol.c: a poll is the byte 0xf0, the reply 130 bytes; UM24C/UM25C end with 0xFFF1
  (poll_csum_fff1); the UM34C's byte 129 is the XOR of the bytes at offsets 1, 3, 7, 9, 15, ... 127
  (poll_csum_um34c; not every odd offset: 5, 11, 13, ... are left out); V at 2 and I at 4 (u16 BE) in steps of
  10 mV / 1 mA (UM24C, UM34C) or 1 mV / 0.1 mA (UM25C); temperature at 10.
- rd-usb interfaces/um.py: the meter's own power, u32 BE at offset 6, in mW.
- rd-usb issue 54: "the meters internally sample at 500ms"; faster polls return duplicates.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from bench.errors import MeterError
from bench.meter.drivers import create, driver_class
from bench.meter.drivers.um import decode_frame
from meter_emulators import UmDevice, collect, um_frame

SIGROK_UM34C_XOR = (1, 3, 7, 9, 15, 17, 19, 23, 31, 39, 41, 45, 49, 53, 55, 57, 59, 63, 67, 69, 73, 79, 83, 89,
                    97, 99, 109, 111, 113, 119, 121, 127)


def published_frame(model_id: int, v_raw: int, i_raw: int, p_mw: int, trailer: str) -> bytes:
    """A frame written straight from the tables above (not through the emulator's helper)."""
    data = bytearray(130)
    struct.pack_into(">HHHIH", data, 0, model_id, v_raw, i_raw, p_mw, 27)
    if trailer == "fff1":
        data[128:130] = b"\xff\xf1"
    else:
        x = 0
        for i in SIGROK_UM34C_XOR:
            x ^= data[i]
        data[129] = x
    return bytes(data)


def test_each_model_decodes_with_its_own_steps_and_power_field():
    r = decode_frame(published_frame(0x09C9, 5083, 8123, 4129, "fff1"))  # UM25C: 1 mV, 0.1 mA
    assert (r.model.name, r.temperature_c) == ("um25c", 27)
    assert r.volts == pytest.approx(5.083) and r.amps == pytest.approx(0.8123) and r.meter_watts == pytest.approx(4.129)
    r = decode_frame(published_frame(0x0963, 508, 812, 4125, "fff1"))  # UM24C: 10 mV, 1 mA
    assert r.model.name == "um24c" and r.volts == pytest.approx(5.08) and r.amps == pytest.approx(0.812)
    r = decode_frame(published_frame(0x0D4C, 508, 812, 4125, "xor"))  # UM34C: XOR trailer
    assert r.model.name == "um34c" and r.meter_watts == pytest.approx(4.125)


def test_um34c_checksum_is_sigroks_xor_not_an_end_marker():
    good = bytearray(published_frame(0x0D4C, 508, 812, 4125, "xor"))
    with pytest.raises(ValueError, match="um34c frame fails its checksum"):
        decode_frame(published_frame(0x0D4C, 508, 812, 4125, "fff1"))  # what the old driver expected
    flipped = bytearray(good)
    flipped[3] ^= 0x01  # offset 3 (voltage low byte) is covered by the XOR
    with pytest.raises(ValueError):
        decode_frame(bytes(flipped))
    uncovered = bytearray(good)
    uncovered[5] ^= 0x01  # offset 5 (current low byte) is not in sigrok's list: the checksum cannot see it
    assert decode_frame(bytes(uncovered)).amps == pytest.approx(0.813)
    with pytest.raises(ValueError, match="unknown model id"):
        decode_frame(b"\x12\x34" + bytes(good[2:]))
    with pytest.raises(ValueError, match="130"):
        decode_frame(bytes(good[:60]))
    assert um_frame("um34c", 5.08, 0.812, temp_c=27, watts=4.125) == bytes(good)  # the emulator agrees


def test_um24c_is_a_driver_and_options_are_checked():
    assert driver_class("um24c") is driver_class("um25c")
    with pytest.raises(MeterError, match="power='volts'"):
        create("um25c", {"power": "volts"})
    with pytest.raises(MeterError, match="rate_hz=50"):
        create("um25c", {"rate_hz": "50"})
    assert "tens of seconds" in driver_class("um34c").NOTE


@pytest.mark.parametrize("model", ["um24c", "um25c", "um34c"])
def test_polls_over_pty_report_the_model_in_the_frame_and_resync(tmp_path, model):
    link = str(tmp_path / "rfcomm0")
    with UmDevice(link, model=model, power=lambda t: (5.08, 0.81), bad_every=4, refresh_hz=20) as dev:
        drv = create("um25c", {"port": link, "rate_hz": "20", "timeout_s": "0.2"})  # the wrong driver name
        drv.open()
        try:
            t, p = collect(drv, 1.0)
        finally:
            drv.close()
    assert dev.polls >= 8 and drv.garbage >= 1
    assert drv.seen_model == model and drv.describe()["device_id"].startswith(model)
    assert len(t) >= 4 and np.allclose(p, 4.115, atol=0.0006)  # the meter's power field: 4115 mW


def test_default_rate_drops_repeats_and_stamps_by_reading_age(tmp_path):
    link = str(tmp_path / "rfcomm0")
    with UmDevice(link, model="um25c", power=lambda t: (5.0, 0.5 + 0.01 * t)) as dev:  # reading changes every 0.5 s
        drv = create("um25c", {"port": link, "rate_hz": "8"})  # polled 4x faster than it refreshes
        drv.open()
        try:
            t, p = collect(drv, 3.2)
        finally:
            drv.close()
        truth_t, truth_p = map(np.array, zip(*dev.truth))
    assert drv.repeats >= 10  # most polls saw the same reading again
    assert len(t) <= len(truth_t) + 1 and np.all(np.diff(t) > 0)
    nearest = np.abs(t[:, None] - truth_t[None, :]).argmin(axis=1)
    err_s = (t - truth_t[nearest]) / 1e9
    assert np.allclose(p, truth_p[nearest], atol=0.001)
    assert np.all(np.abs(err_s) <= drv.uncertainty().time_s + 0.05)  # within the declared stamp uncertainty
    assert drv.uncertainty().time_s == pytest.approx(0.09375)  # half the longest poll gap when polling faster
    assert create("um25c", {}).uncertainty().time_s == pytest.approx(0.25)  # at the default rate: ±0.25 s
