"""A stand-in for the Joulescope C binding (``pyjoulescope_driver.binding.Driver``), for running the real
``joulescope`` 1.5.0 package with no instrument attached. Only the binding is replaced: the vendor's scan,
DriverWrapper, Device/DeviceJs110/DeviceJs220, parameter_set and statistics post-processing all run as shipped.

What the binding does, from its source (pyjoulescope_driver 2.2.12, binding.pyx, ``_jsdrv_union_to_py`` for
JSDRV_PAYLOAD_TYPE_STATISTICS, and joulescope_driver src/js110_usb.c ``statistics_fwd``), and what this fake copies:
- a statistics record is a dict: ``time.samples.value = [block_sample_id, block_sample_id + block_sample_count *
  decimate_factor]``, ``time.sample_freq``, ``time.range``, ``time.delta``, ``time.utc``, ``time.decimate_factor``,
  ``time.decimate_sample_count``, ``time.accum_samples``, ``time.time_map``; ``signals.current/voltage/power`` with
  ``avg, std, min, max, p2p`` (+ ``integral`` for current and power); ``accumulators.charge/energy`` with
  ``value, int_value, int_scale, units``; ``source: 'sensor'``;
- the JS110 publishes its on-instrument statistics on ``<dev>/s/sstats/value`` at 2 Hz (2 Msps counter,
  block_sample_id from the instrument's 32-bit samples_total); host-side statistics (``s/stats/ctrl`` = 1) and
  the sample streams (``s/i/ctrl`` ...) make the instrument stream to the host;
- the JS220 publishes ``<dev>/s/stats/value`` once ``s/stats/ctrl`` is 1, every ``s/stats/scnt`` samples at 1 Msps;
- a failed publish raises ``RuntimeError("jsdrv_publish failed <rc> <name> | <description><topic>")``.
The load is ``Instrument.load`` (W over seconds since the start). Delivery: each record reaches the host 3-7 ms after its interval ends (USB + driver thread), and ``stall_at`` holds
one record back so the next ones arrive bunched.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

MODELS = {"js110": (2_000_000, "s/sstats/value"), "js220": (1_000_000, "s/stats/value")}


def power(t_s: float) -> float:
    return 3.0 + 1.5 * math.sin(2 * math.pi * t_s / 1.3)


def energy(load: Callable[[float], float], t0_s: float, t1_s: float, steps: int = 400) -> float:
    """The integral of ``load`` over [t0, t1] (Simpson's rule: exact for the default sine to 1e-9)."""
    h = (t1_s - t0_s) / steps
    inner = sum((4 if k % 2 else 2) * load(t0_s + k * h) for k in range(1, steps))
    return h / 3 * (load(t0_s) + inner + load(t1_s))


@dataclass
class Instrument:
    path: str
    drift_ppm: float = 40.0
    counter_start: int = (1 << 32) - 3_000_000  # the JS110 counter wraps 1.5 s in
    stall_at: int = -1
    load: Callable[[float], float] = power  # W at seconds since the instrument started
    t0_ns: int = 0
    is_open: bool = False
    published: list = field(default_factory=list)
    truth: list = field(default_factory=list)  # (host ns interval start, host ns interval end, mean W)
    host_streaming: bool = False
    stats_ctrl: int = 0
    scnt: int = 500_000

    @property
    def model(self) -> str:
        return self.path.split("/")[1]


class FakeJsdrv:
    """The binding's Driver API (methods of pyjoulescope_driver.binding.Driver) over simulated instruments."""

    instruments: list[Instrument] = []
    fail_topics: tuple[str, ...] = ()
    last: "FakeJsdrv | None" = None

    def __init__(self) -> None:
        self.log_level = "INFO"
        self.subs: dict[str, list] = defaultdict(list)
        self.devices = {inst.path: inst for inst in type(self).instruments}
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        type(self).last = self

    def device_paths(self, timeout=None):  # noqa: ANN001
        return list(self.devices)

    def subscribe(self, topic, flags, fn, timeout=None):  # noqa: ANN001
        self.subs[topic].append(fn)

    def unsubscribe(self, topic, fn, timeout=None):  # noqa: ANN001
        if fn in self.subs.get(topic, []):
            self.subs[topic].remove(fn)

    def unsubscribe_all(self, fn, timeout=None):  # noqa: ANN001
        for fns in self.subs.values():
            if fn in fns:
                fns.remove(fn)

    def publish(self, topic, value, timeout=None):  # noqa: ANN001
        path, _, sub = topic.rpartition("/s/")
        inst = self.devices.get(path)
        if inst is None:
            return
        inst.published.append(("s/" + sub, value))
        if any(topic.endswith(t) for t in type(self).fail_topics):
            raise RuntimeError(f"jsdrv_publish failed 5 NOT_SUPPORTED | not supported{topic}")
        if sub == "stats/scnt":
            inst.scnt = int(value)
        if sub == "stats/ctrl":
            inst.stats_ctrl = int(value in (1, "on", True))
            if inst.model == "js110" and inst.stats_ctrl:
                inst.host_streaming = True
        if sub.endswith("/ctrl") and sub != "stats/ctrl" and value in (1, "on", True):
            inst.host_streaming = True

    def query(self, topic, timeout=None):  # noqa: ANN001
        return 0

    def open(self, device_prefix, mode=None, timeout=None):  # noqa: ANN001
        inst = self.devices[device_prefix]
        inst.is_open = True
        t = threading.Thread(target=self._run, args=(inst,), daemon=True)
        t.start()
        self._threads.append(t)

    def close(self, device_prefix, timeout=None):  # noqa: ANN001
        self.devices[device_prefix].is_open = False

    def finalize(self, timeout=None):  # noqa: ANN001
        self._stop.set()

    def _run(self, inst: Instrument) -> None:
        """Emit the instrument's statistics on its own drifting clock, delivered 3-7 ms late."""
        fs, topic = MODELS[inst.model]
        rng = random.Random(7)
        t0_ns = inst.t0_ns = time.monotonic_ns()
        dev_rate = fs * (1 + inst.drift_ppm * 1e-6)  # device samples per host second
        sample = inst.counter_start
        elapsed = 0
        acc = 0.0
        held: list = []
        k = 0
        while inst.is_open and not self._stop.is_set():
            active = inst.model == "js110" or inst.stats_ctrl
            block = fs // 2 if inst.model == "js110" else inst.scnt
            a_s, b_s = elapsed / dev_rate, (elapsed + block) / dev_rate
            due_ns = t0_ns + int(b_s * 1e9)
            delay = (due_ns - time.monotonic_ns()) / 1e9 + rng.uniform(0.003, 0.007)
            if delay > 0:
                time.sleep(delay)
            e = energy(inst.load, a_s, b_s)
            acc += e
            record = self._record(sample % (1 << 32) if inst.model == "js110" else sample, block, fs, e / (b_s - a_s), acc)
            sample += block
            elapsed += block
            if not active:
                continue
            inst.truth.append((t0_ns + int(a_s * 1e9), due_ns, e / (b_s - a_s)))
            held.append(record)
            k += 1
            if k == inst.stall_at:
                continue  # USB stall: this record waits for the next one
            for r in held:
                for fn in list(self.subs.get(f"{inst.path}/{topic}", [])):
                    fn(f"{inst.path}/{topic}", r)
            held = []

    @staticmethod
    def _record(start: int, count: int, fs: int, p_avg: float, acc_j: float) -> dict:
        t_start, t_delta = start / fs, count / fs
        v = 5.1
        i_avg = p_avg / v

        def stat(avg: float, units: str, integral: float | None = None) -> dict:
            s = {"avg": {"value": avg, "units": units}, "std": {"value": 0.0, "units": units},
                 "min": {"value": avg * 0.9, "units": units}, "max": {"value": avg * 1.1, "units": units},
                 "p2p": {"value": avg * 0.2, "units": units}}
            if integral is not None:
                s["integral"] = {"value": integral, "units": "C" if units == "A" else "J"}
            return s

        return {
            "time": {
                "samples": {"value": [start, start + count], "units": "samples"},
                "utc": {"value": [0, 0], "units": "time64"},
                "sample_freq": {"value": fs, "units": "Hz"},
                "range": {"value": [t_start, t_start + t_delta], "units": "s"},
                "delta": {"value": t_delta, "units": "s"},
                "decimate_factor": {"value": 1, "units": "samples"},
                "decimate_sample_count": {"value": count, "units": "samples"},
                "accum_samples": {"value": [0, start + count], "units": "samples"},
                "time_map": {"offset_time": 0, "offset_counter": 0, "counter_rate": float(fs)},
            },
            "signals": {"current": stat(i_avg, "A", i_avg * t_delta), "voltage": stat(v, "V"),
                        "power": stat(p_avg, "W", p_avg * t_delta)},
            "accumulators": {
                "charge": {"value": acc_j / v, "int_value": int(acc_j / v * 2**31), "int_scale": 2**-31, "units": "C"},
                "energy": {"value": acc_j, "int_value": int(acc_j * 2**27), "int_scale": 2**-27, "units": "J"},
            },
            "source": "sensor",
        }


def install(monkeypatch, *instruments: Instrument, fail_topics: tuple[str, ...] = ()) -> type[FakeJsdrv]:
    """Put the fake in place of the binding's Driver where the vendor's v1 wrapper looks it up."""
    import joulescope.v1.driver as v1

    FakeJsdrv.instruments = list(instruments)
    FakeJsdrv.fail_topics = fail_topics
    monkeypatch.setattr(v1, "Driver", FakeJsdrv)
    monkeypatch.setattr(v1.DriverWrapper, "__singleton__", None)
    return FakeJsdrv
