"""Meter benchmarks; prints one line per number. Run: .venv/bin/python tests/benchmarks/bench_meter.py

  ingest      ina-serial lines through a real pty -> driver -> ring buffer -> raw log, zero loss checked
  cpu         the daemon subprocess's CPU share at 1 kHz (sim, and ina-serial fed by the pty emulator)
  query       energy lookups over one hour of 1 kHz data (in process, and over the socket); an answer's three
              windows in one request vs three
  accuracy    integration error against analytic waveforms
  memory      bytes of a ring holding one hour of 1 kHz data (the daemon's own RSS over a day: bench_meter_days.py)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import tty

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from bench.meter.buffer import RawLog, RingBuffer  # noqa: E402
from bench.meter.drivers import create  # noqa: E402
from bench.meter.drivers.ina_wire import frame  # noqa: E402
from bench.meter.local import spawn_daemon  # noqa: E402


def report(name: str, value: float, unit: str, target: str = "") -> None:
    print(f"{name:48s} {value:14.4f} {unit:10s} {target}", flush=True)


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_ingest(n: int = 300_000) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    # The device clock claims 500 kHz, faster than any link delivers, so no sample "arrives before it was taken"
    # (a blast at a claimed 50 kHz would, and the clock map rightly refuses to run time backwards for it).
    blob = b"".join(frame(b"D,%d,%d,5000,%d" % (k + 1, 1000 + k * 2, 600000 + k % 1000)) for k in range(n))
    pid = os.fork()
    if pid == 0:  # the device: blast every line as fast as the pty takes it
        os.close(slave)
        time.sleep(1.0)  # after the driver's open() has flushed the port
        view = memoryview(blob)
        while view:
            view = view[os.write(master, view[:65536]):]
        time.sleep(5)
        os._exit(0)
    drv = create("ina-serial", {"port": os.ttyname(slave), "header_timeout_s": "0.05", "batch_s": "0.02",
                                 "silence_s": "5"})
    drv.open()
    buf = RingBuffer(2 * n, gap_ns=10**9)
    with tempfile.TemporaryDirectory() as tmp:
        rawlog = RawLog(tmp, {"driver": "ina-serial"})
        got = 0
        t_start = None
        deadline = time.monotonic() + 60
        while got < n and time.monotonic() < deadline:
            b = drv.read()
            if len(b):
                if t_start is None:
                    t_start = time.perf_counter()
                got += buf.append(b.t_ns, b.power_w, b.gap_before)
                rawlog.write_samples(b.t_ns, b.power_w)
        elapsed = time.perf_counter() - (t_start or time.perf_counter())
        rawlog.close()
    drv.close()
    os.waitpid(pid, 0)
    os.close(master)
    report("ingest: ina-serial pty->buffer->log rate", got / elapsed, "samples/s", ">= 50000")
    report("ingest: samples lost (seq gaps + bad lines)", drv.lost + drv.garbage + (n - got), "samples", "== 0")


def bench_cpu(seconds: float = 8.0) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "m.sock")
        with spawn_daemon("sim", {"rate_hz": 1000, "mode": "sine", "noise_w": 0.02}, sock, log_dir=tmp) as d:
            time.sleep(1.0)
            c0, t0 = cpu_s(d.pid), time.monotonic()
            time.sleep(seconds)
            share = (cpu_s(d.pid) - c0) / (time.monotonic() - t0)
        report("cpu: daemon at 1 kHz, sim driver + raw log", 100 * share, "% of core", "<= 2")
        from meter_emulators import InaDevice

        link = os.path.join(tmp, "ttyINA")
        dev = InaDevice(link, rate_hz=1000, tick_s=0.01).start()
        try:
            with spawn_daemon("ina-serial", {"port": link}, sock, log_dir=tmp) as d:
                time.sleep(1.5)
                c0, t0 = cpu_s(d.pid), time.monotonic()
                time.sleep(seconds)
                share = (cpu_s(d.pid) - c0) / (time.monotonic() - t0)
        finally:
            dev.stop()
        report("cpu: daemon at 1 kHz, ina-serial over pty + raw log", 100 * share, "% of core", "<= 2")


def fill_hour(buf: RingBuffer, rate_hz: float = 1000.0, seconds: int = 3600) -> tuple[np.ndarray, np.ndarray]:
    n = int(rate_hz * seconds)
    t = (10**12 + np.arange(n) * (1e9 / rate_hz)).astype(np.int64)
    rng = np.random.default_rng(0)
    p = 3.0 + 2.0 * np.sin(np.arange(n) / 5000.0) + rng.normal(0, 0.05, n)
    for a in range(0, n, 50):  # 50-sample batches, as the daemon sees them
        buf.append(t[a:a + 50], p[a:a + 50])
    return t, p


def bench_query_and_memory() -> None:
    buf = RingBuffer(int(3600 * 1000 * 1.1), gap_ns=10_000_000)
    t0 = time.perf_counter()
    t, p = fill_hour(buf)
    fill_s = time.perf_counter() - t0
    report("memory: a ring holding 1 h at 1 kHz (21 B/sample)", buf.nbytes() / 2**20, "MiB",
           "the daemon holds 20 MiB: bench_meter_days.py")
    report("ingest: buffer append, 50-sample batches", len(t) / fill_s, "samples/s")
    rng = np.random.default_rng(1)
    lat = []
    for _ in range(20_000):
        a, b = sorted(rng.integers(t[0], t[-1], 2))
        s = time.perf_counter_ns()
        buf.window(int(a), int(b))
        lat.append(time.perf_counter_ns() - s)
    lat_us = np.array(lat) / 1e3
    report("query: window() p50 over 1 h of 1 kHz data", np.percentile(lat_us, 50) / 1e3, "ms")
    report("query: window() p99 over 1 h of 1 kHz data", np.percentile(lat_us, 99) / 1e3, "ms", "<= 1")
    exact = np.trapezoid(p, t / 1e9)
    report("accuracy: whole hour vs numpy trapezoid (rel)", abs(buf.window(int(t[0]), int(t[-1])).energy_j - exact) / exact, "")
    del buf


def bench_socket_query(n: int = 3000) -> None:
    from bench.meter.client import connect

    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "m.sock")
        with spawn_daemon("sim", {"rate_hz": 1000}, sock):
            time.sleep(0.5)
            with connect(sock) as c:
                lat = []
                for _ in range(n):
                    now = time.monotonic_ns()
                    s = time.perf_counter_ns()
                    c.energy(now - 400_000_000, now - 100_000_000, wait_s=0)
                    lat.append(time.perf_counter_ns() - s)
    lat_ms = np.array(lat) / 1e6
    report("query: energy() over the socket p50", np.percentile(lat_ms, 50), "ms")
    report("query: energy() over the socket p99", np.percentile(lat_ms, 99), "ms", "<= 1")


def bench_answer_windows(n: int = 1000) -> None:
    """CPU per answer of its three energy windows: three ``energy`` requests (before) vs one ``windows`` request
    (what ``runner.meter_windows`` sends), client (this process) and daemon (/proc) alike."""
    from bench.meter.client import connect

    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "m.sock")
        with spawn_daemon("sim", {"rate_hz": 1000}, sock):
            time.sleep(1.0)
            with connect(sock) as c:
                pid = int(c.info()["pid"])
                now = time.monotonic_ns()
                send, first, last = now - 900_000_000, now - 700_000_000, now - 100_000_000
                ways = {"3 energy requests": lambda: (c.energy(send, last, 0), c.energy(send, first, 0),
                                                      c.energy(first, last, 0)),
                        "1 windows request": lambda: c.windows([(send, last, first), (send, first), (first, last)], 0)}
                for name, ask in ways.items():
                    c0, d0 = time.process_time(), cpu_s(pid)
                    for _ in range(n):
                        ask()
                    client_us, daemon_us = (time.process_time() - c0) / n * 1e6, (cpu_s(pid) - d0) / n * 1e6
                    report(f"cpu: an answer's windows, {name}", client_us + daemon_us, "us",
                           f"(client {client_us:.0f}, daemon {daemon_us:.0f})")


def bench_accuracy(rate_hz: float = 1000.0, seconds: float = 60.0) -> None:
    n = int(rate_hz * seconds) + 1
    t_s = np.arange(n) / rate_hz
    t_ns = (10**12 + np.round(t_s * 1e9)).astype(np.int64)
    a, b = 1.2345, 57.891  # window edges between samples
    cases = {
        "sine 4+2sin(2pi 0.7t)": (4 + 2 * np.sin(2 * np.pi * 0.7 * t_s),
                                  4 * (b - a) - 2 / (2 * np.pi * 0.7) * (np.cos(2 * np.pi * 0.7 * b) - np.cos(2 * np.pi * 0.7 * a))),
        "ramp 2+0.1t": (2 + 0.1 * t_s, 2 * (b - a) + 0.05 * (b * b - a * a)),
        "square 3/6.5 W, 1.37 s period": (np.where(np.mod(t_s, 1.37) < 0.685, 6.5, 3.0), None),
    }
    for name, (p, exact) in cases.items():
        if exact is None:  # integrate the square wave analytically: full periods plus the remainders
            fine = np.arange(a, b, 1e-6)
            exact = float(np.where(np.mod(fine, 1.37) < 0.685, 6.5, 3.0).sum() * 1e-6)
        buf = RingBuffer(n + 10, gap_ns=10**8)
        buf.append(t_ns, p)
        got = buf.window(int(10**12 + a * 1e9), int(10**12 + b * 1e9)).energy_j
        report(f"accuracy: {name} (rel error)", abs(got - exact) / exact * 100, "%", "<= 0.1")


if __name__ == "__main__":
    which = set(sys.argv[1:]) or {"ingest", "cpu", "query", "accuracy"}
    print(f"{'benchmark':48s} {'value':>14s} {'unit':10s} target")
    if "accuracy" in which:
        bench_accuracy()
    if "query" in which:
        bench_query_and_memory()
        bench_socket_query()
        bench_answer_windows()
    if "ingest" in which:
        bench_ingest()
    if "cpu" in which:
        bench_cpu()
