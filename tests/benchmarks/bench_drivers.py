"""Meter drivers against their instruments (issue 14's table). Run: .venv/bin/python tests/benchmarks/bench_drivers.py

Every driver reads its emulated instrument (the joulescope driver: the real vendor package over the simulated
binding) for DRIVERS_S seconds while the load follows a Pi-like waveform: idle at 2.85 W, 2.2 s "answers" at 6.5 W
every 4 s, a 7 Hz ripple. Per driver and model it prints:
  power     decoded power vs the value the instrument encoded at its reading time (max relative error)
  stamp     sample stamp vs the true reading time: median and p95 of |error|, ms
  E 1.5s    energy of random 1.5 s windows (the ring buffer's integral of the samples) vs the true integral
  E 25s     the same for 25 s windows: median and p95 of |relative error|
  faults    what the injected faults became (garbage / overload / late replies / I2C errors: counted, never samples)
and then the meter daemon's CPU at each driver's default rate (daemon subprocess, instrument in another process).
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bench.meter.buffer import RingBuffer  # noqa: E402
from bench.meter.drivers import create  # noqa: E402
from bench.meter.local import spawn_daemon  # noqa: E402
from meter_emulators import InaDevice, ScpiDevice, ScpiTcpServer, UmDevice  # noqa: E402

DRIVERS_S = float(os.environ.get("BENCH_DRIVERS_S", "60"))
CPU_S = float(os.environ.get("BENCH_DRIVERS_CPU_S", "10"))
CPU_REPEATS = int(os.environ.get("BENCH_DRIVERS_CPU_REPEATS", "5"))
VOLTS = 5.1


def load_w(t: np.ndarray | float) -> np.ndarray | float:
    """The Pi-like load: idle 2.85 W, a 2.1 s answer at 6.5 W every 3.7 s (30 ms ramps), a 0.15 W 7.3 Hz ripple.
    The periods are not multiples of any meter's sampling period, as real answers are not."""
    phase = np.mod(t, 3.7)
    ramp = np.clip(np.minimum(phase, 2.1 - phase) / 0.03, 0.0, 1.0)
    return 2.85 + (6.5 - 2.85) * ramp + 0.15 * np.sin(2 * math.pi * 7.3 * np.asarray(t))


def load_va(t: float) -> tuple[float, float]:
    return VOLTS, float(load_w(t)) / VOLTS


def true_energy(t0_s: float, t1_s: float) -> float:
    grid = np.linspace(t0_s, t1_s, int((t1_s - t0_s) * 20_000) + 2)  # 50 us steps: the ramps are 30 ms
    return float(np.trapezoid(load_w(grid), grid))


@dataclass
class Run:
    """What one driver produced, with the truth to hold it against."""

    name: str
    t_ns: np.ndarray
    p_w: np.ndarray
    gaps: list[bool]
    t0_ns: int  # the instrument's time origin: load_w takes seconds since it
    truth_ns: np.ndarray  # when the instrument took each reading
    counters: dict = field(default_factory=dict)
    batches: list = field(default_factory=list)
    last_seq: int | None = None
    truth_w: np.ndarray | None = None  # what the instrument encoded, when it is not load_w at the reading time


def collect(drv, seconds: float) -> tuple[np.ndarray, np.ndarray, list]:
    batches = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        batches.append(drv.read())
    return (np.concatenate([b.t_ns for b in batches]), np.concatenate([b.power_w for b in batches]), batches)


def opened(name: str, opts: dict, seconds: float):
    """A driver opened, read for ``seconds`` and closed: (driver, t_ns, power_w, batches)."""
    drv = create(name, opts)
    drv.open()
    try:
        return (drv, *collect(drv, seconds))
    finally:
        drv.close()


def read_driver(name: str, drv, seconds: float, origin_ns, truth) -> Run:  # noqa: ANN001
    drv.open()
    try:
        t, p, batches = collect(drv, seconds)
    finally:
        drv.close()
    return Run(name, t, p, [b.gap_before for b in batches], origin_ns(), np.asarray(truth(), np.int64),
               drv.counters(), batches, getattr(drv, "_last_seq", None))


def um_run(model: str, link: str) -> Run:
    with UmDevice(link, model=model, power=load_va) as dev:
        run = read_driver(model, create(model, {"port": link}), DRIVERS_S, lambda: dev.t0_ns, lambda: [])
        served = np.array(dev.served, np.int64)
    # A sample stands for the reading served at the first poll after its stamp (the stamp lies between the
    # previous poll and its own, or a quarter period before its own).
    first_after = np.searchsorted(served[:, 0], run.t_ns, side="right")
    run.truth_ns = served[np.minimum(first_after, len(served) - 1), 1]
    return run


def scpi_run(link: str) -> Run:
    with ScpiDevice(link, power=load_va) as dev:
        t0 = int(dev.instrument.t0 * 1e9)
        return read_driver("scpi serial 10 Hz", create("scpi", {"port": link}), DRIVERS_S, lambda: t0,
                           lambda: dev.instrument.truth)


def scpi_visa_run() -> Run:
    with ScpiTcpServer(power=load_va) as server:
        t0 = int(server.instrument.t0 * 1e9)
        drv = create("scpi", {"resource": f"TCPIP0::127.0.0.1::{server.port}::SOCKET"})
        return read_driver("scpi pyvisa-py LAN 10 Hz", drv, DRIVERS_S, lambda: t0, lambda: server.instrument.truth)


def ina_run(link: str, protocol: int) -> Run:
    with InaDevice(link, protocol=protocol, power=load_va, drift_ppm=120.0) as dev:
        run = read_driver(f"ina-serial v{protocol} {'binary' if protocol == 2 else 'text'} 1 kHz",
                          create("ina-serial", {"port": link}), DRIVERS_S, lambda: dev.t0_ns, lambda: [])
        truth = dict(dev.truth)
    seqs = range(run.last_seq - len(run.t_ns) + 1, run.last_seq + 1)
    run.truth_ns = np.array([truth[s] for s in seqs], np.int64)  # aligned by sequence number (nothing lost)
    return run


def joulescope_run(path: str, hz: int) -> Run:
    import joulescope.v1.driver as v1
    from joulescope_binding import FakeJsdrv, Instrument

    inst = Instrument(path, load=lambda t: float(load_w(t)))
    saved = v1.Driver
    FakeJsdrv.instruments, FakeJsdrv.fail_topics = [inst], ()
    v1.Driver, v1.DriverWrapper.__singleton__ = FakeJsdrv, None
    try:
        model = path.split("/")[1]
        run = read_driver(f"joulescope {model} {hz} Hz", create("joulescope", {"reduction_hz": str(hz)}), DRIVERS_S,
                          lambda: inst.t0_ns, lambda: [(a + b) // 2 for a, b, _ in inst.truth])
    finally:
        v1.Driver, v1.DriverWrapper.__singleton__ = saved, None
    run.truth_w = np.array([w for _, _, w in inst.truth])  # a statistics record is the mean over its interval
    return run


def matched_truth(run: Run) -> np.ndarray:
    """Index of the reading each sample stands for: already aligned (ina-serial by sequence number, UM meters by the
    poll that served it), joulescope records in order, SCPI replies the nearest query in time."""
    if run.name.startswith(("ina", "um")):
        return np.arange(len(run.t_ns))
    if run.name.startswith("joulescope"):  # one sample per statistics record, in order, from the first one read
        first = int(np.abs(run.truth_ns - run.t_ns[0]).argmin())
        return np.minimum(first + np.arange(len(run.t_ns)), len(run.truth_ns) - 1)
    return np.abs(run.t_ns[:, None] - run.truth_ns[None, :]).argmin(axis=1)


def window_errors(run: Run, span_s: float, n: int = 400) -> np.ndarray:
    buf = RingBuffer(len(run.t_ns) + 10, gap_ns=int(max(10 * np.median(np.diff(run.t_ns)), 2e7)))
    for b in run.batches:
        buf.append(b.t_ns, b.power_w, b.gap_before)
    rng = np.random.default_rng(1)
    lo, hi = run.t_ns[0] + 3e9, run.t_ns[-1] - span_s * 1e9 - 1e9
    if hi <= lo:
        return np.array([np.nan])
    starts = rng.uniform(lo, hi, n)
    out = []
    for a in starts:
        w = buf.window(int(a), int(a + span_s * 1e9))
        truth = true_energy((a - run.t0_ns) / 1e9, (a + span_s * 1e9 - run.t0_ns) / 1e9)
        out.append((w.energy_j / w.coverage if w.coverage > 0 else np.nan) / truth - 1)  # per covered second
    return np.asarray(out)


def report(run: Run) -> None:
    i = matched_truth(run)
    stamp = np.abs(run.t_ns - run.truth_ns[i]) / 1e6
    truth_w = run.truth_w if run.truth_w is not None else load_w((run.truth_ns - run.t0_ns) / 1e9)
    p_err = np.abs(run.p_w / truth_w[i] - 1)
    e15, e25 = np.abs(window_errors(run, 1.5)), np.abs(window_errors(run, 25.0))
    print(f"{run.name:28s} {len(run.t_ns):7d} {100 * np.nanmax(p_err):9.3f}% "
          f"{np.median(stamp):8.2f} {np.percentile(stamp, 95):8.2f}   "
          f"{100 * np.nanmedian(e15):6.2f}% {100 * np.nanpercentile(e15, 95):6.2f}%   "
          f"{100 * np.nanmedian(e25):6.2f}% {100 * np.nanpercentile(e25, 95):6.2f}%", flush=True)


def accuracy_table(tmp: str) -> None:
    print(f"drivers: {DRIVERS_S:.0f} s each against a Pi-like load; window errors are |relative|, per covered second")
    print(f"{'driver':28s} {'samples':>7s} {'power max':>10s} {'stamp ms':>8s} {'p95':>8s}   "
          f"{'E1.5s med':>7s} {'p95':>7s}   {'E25s med':>7s} {'p95':>7s}")
    jobs = [lambda m=m: um_run(m, os.path.join(tmp, f"rf-{m}")) for m in ("um24c", "um25c", "um34c")]
    jobs += [lambda: scpi_run(os.path.join(tmp, "ttySCPI")), scpi_visa_run,
             lambda: joulescope_run("u/js110/000415", 2), lambda: joulescope_run("u/js220/001234", 50)]
    runs: list[Run] = [None] * len(jobs)  # type: ignore[list-item]

    def work(i: int) -> None:
        runs[i] = jobs[i]()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for th in threads[:5]:  # the slow-polled meters side by side; the two joulescopes share one vendor singleton
        th.start()
    for i in (5, 6):
        threads[i].start()
        threads[i].join()
    for th in threads[:5]:
        th.join()
    for run in runs:
        report(run)
    for protocol in (1, 2):  # 1 kHz: one at a time
        report(ina_run(os.path.join(tmp, f"ttyINA{protocol}"), protocol))


def fault_table(tmp: str) -> None:
    print("faults injected (counted by the driver; none becomes a sample):")
    link = os.path.join(tmp, "rf-faults")
    with UmDevice(link, model="um34c", power=load_va, bad_every=5):
        drv, *_ = opened("um34c", {"port": link}, 6.0)
    print(f"  um34c, every 5th frame truncated:          {drv.counters()}")
    link = os.path.join(tmp, "ttySCPIf")
    with ScpiDevice(link, power=load_va, overload_every=7, late_every=11, late_s=1.5, junk_every=13):
        drv, _, p, _ = opened("scpi", {"port": link}, 8.0)
    print(f"  scpi, 9.9E37 / 1.5 s late / junk replies:  {drv.counters()}; samples {len(p)}, all finite and < 10 W: "
          f"{bool(np.all(p < 10))}")
    link = os.path.join(tmp, "ttyINAf")
    with InaDevice(link, protocol=2, power=load_va, i2c_error_every=97, overflow_every=131):
        drv, _, p, batches = opened("ina-serial", {"port": link}, 3.0)
    print(f"  ina-serial v2, I2C errors and overflow:    {drv.counters()}; gaps {sum(b.gap_before for b in batches)}; "
          f"min power {p.min():.3f} W")


def cpu_ns(pid: int) -> int:
    """Time on a CPU of every thread of ``pid`` (schedstat, ns): the tick-based /proc/PID/stat counts 10 ms steps,
    too coarse for a daemon that runs a few ms a second."""
    tasks = Path(f"/proc/{pid}/task")
    return sum(int((t / "schedstat").read_text().split()[0]) for t in tasks.iterdir())


def _device(kind: str, link: str, ready, stop) -> None:  # noqa: ANN001 - multiprocessing events
    dev = {"ina1": lambda: InaDevice(link, protocol=1, tick_s=0.01), "ina2": lambda: InaDevice(link, protocol=2, tick_s=0.01),
           "um25c": lambda: UmDevice(link, model="um25c"), "scpi": lambda: ScpiDevice(link)}[kind]()
    with dev:
        ready.set()
        stop.wait()


@contextlib.contextmanager
def device_process(kind: str, link: str):
    ready, stop = multiprocessing.Event(), multiprocessing.Event()
    proc = multiprocessing.Process(target=_device, args=(kind, link, ready, stop), daemon=True)
    proc.start()
    try:
        if not ready.wait(10):
            raise RuntimeError(f"emulated {kind} did not start")
        yield
    finally:
        stop.set()
        proc.join(10)


def cpu_table(tmp: str) -> None:
    """The daemon's share of a core per driver, CPU_REPEATS windows of CPU_S each: median and range, because on a
    shared machine the same daemon varies by 2x between windows (cold caches after every wake-up)."""
    print(f"meter daemon CPU at the driver's default rate ({CPU_REPEATS} x {CPU_S:.0f} s, raw log on, process CPU "
          f"time; machine load {os.getloadavg()[0]:.1f}):")
    cases = [("ina-serial", "ina1", {}, "v1 text lines, 1 kHz"), ("ina-serial", "ina2", {}, "v2 binary blocks, 1 kHz"),
             ("um25c", "um25c", {}, "2 Hz"), ("scpi", "scpi", {}, "10 Hz, batches of 0.5 s"),
             ("scpi", "scpi", {"batch_s": 0}, "10 Hz, a batch per query")]
    for driver, kind, opts, label in cases:
        link = os.path.join(tmp, f"cpu-{kind}")
        sock = os.path.join(tmp, f"{kind}.sock")
        with device_process(kind, link), spawn_daemon(driver, {"port": link, **opts}, sock,
                                                      log_dir=os.path.join(tmp, kind)) as d:
            time.sleep(2.0)
            shares = []
            for _ in range(CPU_REPEATS):
                c0, w0 = cpu_ns(d.pid), time.monotonic_ns()
                time.sleep(CPU_S)
                shares.append((cpu_ns(d.pid) - c0) / (time.monotonic_ns() - w0))
        lo, med, hi = (100 * x for x in (min(shares), float(np.median(shares)), max(shares)))
        print(f"  {driver:10s} {label:26s} {med:6.3f} % of one core (range {lo:.3f}-{hi:.3f})", flush=True)


def main() -> None:
    which = set(sys.argv[1:]) or {"accuracy", "faults", "cpu"}
    with tempfile.TemporaryDirectory() as tmp:
        if "accuracy" in which:
            accuracy_table(tmp)
        if "faults" in which:
            fault_table(tmp)
        if "cpu" in which:
            cpu_table(tmp)


if __name__ == "__main__":
    main()
