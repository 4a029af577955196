"""Throttle state without a process start per answer: the firmware driver's sysfs word, in vcgencmd's format."""

from __future__ import annotations

from bench import thermal


def test_throttled_reads_the_firmware_word_from_sysfs_as_vcgencmd_prints_it(tmp_path, monkeypatch):
    # The Raspberry Pi firmware driver prints the word with "%x\n" (drivers/firmware/raspberrypi.c,
    # get_throttled_show, from "firmware/raspberrypi: Add a get_throttled sysfs file", N. Tronnes, 2018);
    # `vcgencmd get_throttled` prints "throttled=0x50005" for the same word.
    word = tmp_path / "get_throttled"
    word.write_text("50005\n")
    assert thermal.throttled(word) == "0x50005"
    word.write_text("0\n")
    assert thermal.throttled(word) == "0x0"
    monkeypatch.setattr(thermal.shutil, "which", lambda name: None)
    assert thermal.throttled(tmp_path / "absent") is None  # neither sysfs nor vcgencmd: unknown, not an error
    word.write_text("garbage\n")
    assert thermal.throttled(word) is None
