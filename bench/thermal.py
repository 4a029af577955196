"""SoC temperature and throttling state, read where the host offers them (a Pi: /sys/class/thermal, vcgencmd).

Both readers return None when the source is absent (containers without /sys/class/thermal, x86 VMs), so the runner
records "unknown" rather than failing; cooldown then waits no longer than its time limit.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")
# The firmware driver's own copy of the throttle word (Raspberry Pi kernels since 2018): a file read, where
# `vcgencmd` is a process start per call, the largest CPU cost of an answer on a Pi core.
THROTTLED_SYSFS = Path("/sys/devices/platform/soc/soc:firmware/get_throttled")


def temperature_c(zone: Path = THERMAL_ZONE) -> float | None:
    try:
        return int(zone.read_text().strip()) / 1000.0
    except (OSError, ValueError):
        return None


def throttled(sysfs: Path = THROTTLED_SYSFS) -> str | None:
    """The firmware's throttle word as ``vcgencmd get_throttled`` prints it (``0x0`` = never throttled): from
    sysfs where the kernel has it, else from vcgencmd; None where neither exists."""
    try:
        return f"0x{int(sysfs.read_text().strip(), 16):x}"
    except (OSError, ValueError):
        pass
    exe = shutil.which("vcgencmd")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "get_throttled"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.partition("=")[2] or None


@dataclass(frozen=True)
class Cooldown:
    """How a cooldown ended: the temperature reached, after how long, and whether the time limit cut it short."""

    temp_c: float | None
    waited_s: float
    timed_out: bool


def cool_down(max_temp_c: float, max_wait_s: float, *, read=temperature_c, sleep=time.sleep,
              step_s: float = 2.0) -> Cooldown:
    """Wait until the SoC is below ``max_temp_c`` or ``max_wait_s`` has passed (sleeping, not spinning)."""
    start = time.monotonic()
    temp = read()
    while temp is not None and temp >= max_temp_c:
        waited = time.monotonic() - start
        if waited >= max_wait_s:
            log.warning("cooldown: still %.1f C after %.0f s (limit %.0f C); going on", temp, waited, max_temp_c)
            return Cooldown(temp, waited, True)
        sleep(min(step_s, max_wait_s - waited))
        temp = read()
    return Cooldown(temp, time.monotonic() - start, False)
