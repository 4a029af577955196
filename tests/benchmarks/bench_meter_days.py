"""Daemon memory over a day, in simulated time. Run: .venv/bin/python tests/benchmarks/bench_meter_days.py [HOURS]

The real daemon (ring buffer, raw log rotating at 64 MB with two files kept, socket sessions) in its own fresh
process (this file run with --daemon: it imports only what the daemon and its driver import), fed 1 kHz samples of simulated time as fast as it takes them, so 24 hours pass in a couple of minutes.
Meanwhile a client does what a runner does, scaled to the simulated clock: an answer's begin and end marks, its
windows and a trace every few simulated minutes. The daemon's RSS is read from /proc at each simulated hour.
Target (issue 15 item 6): <= 64 MiB after 24 h at 1 kHz, flat after the ring has filled.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT]

from bench.meter.config import DaemonConfig  # noqa: E402
from bench.meter.drivers.base import Driver, Uncertainty  # noqa: E402
from bench.meter.samples import SampleBatch  # noqa: E402

RATE_HZ = 1000
BATCH = 1000  # one simulated second a read
TARGET_MIB = 64.0


class FastForward(Driver):
    """1 kHz samples of a sine-plus-noise load on a simulated clock that ends a second ago, handed over as fast
    as the daemon takes them (its own CPU is the limit, not the wall clock)."""

    OPTIONS = {}

    def __init__(self, hours: float) -> None:
        super().__init__("fast-forward", {})
        self.n_total = int(hours * 3600 * RATE_HZ)
        self.t0 = time.monotonic_ns() - int(hours * 3600e9) - 10**9
        self.k = 0
        self.rng = np.random.default_rng(0)

    @property
    def nominal_rate_hz(self) -> float:
        return float(RATE_HZ)

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def uncertainty(self) -> Uncertainty:
        return Uncertainty(0.0, 0.0, 0.0, "fast-forward benchmark waveform: exact on its grid by construction")

    def read(self) -> SampleBatch:
        if self.k >= self.n_total:
            time.sleep(0.2)
            return SampleBatch.empty()
        k = np.arange(self.k, self.k + BATCH, dtype=np.int64)
        self.k += BATCH
        p = 4.0 + 2.0 * np.sin(k / 60_000.0) + self.rng.normal(0.0, 0.02, BATCH)
        return SampleBatch(self.t0 + k * (10**9 // RATE_HZ), p)


def run_daemon(socket_path: str, log_dir: str, hours: float) -> None:
    from bench.meter.daemon import Daemon

    config = DaemonConfig("fast-forward", {}, socket_path, log_dir=log_dir, rotate_mb=64, keep_files=2)
    Daemon(config, driver=FastForward(hours)).serve()


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def answer_like(c, newest: int) -> None:
    """One simulated answer, ending at the newest sample: marks, three windows, a trace."""
    begin, first, end = newest - 40 * 10**9, newest - 35 * 10**9, newest - 10**6
    c.mark("answer-begin sim", begin)
    c.mark("answer-end sim", end)
    for a, b in ((begin, end), (begin, first), (first, end)):
        c.energy(a, b, wait_s=0)
    c.samples(begin - 10**9, end, 1000)


def main(hours: float = 24.0) -> None:
    from bench.meter.client import connect  # the client side only: not in the daemon's process

    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "m.sock")
        err_path = os.path.join(tmp, "daemon.stderr")
        with open(err_path, "w") as err:
            child = subprocess.Popen([sys.executable, __file__, "--daemon", sock, os.path.join(tmp, "log"),
                                      str(hours)], stderr=err)
        while not os.path.exists(sock):
            if child.poll() is not None:  # a daemon that cannot start says why, instead of a wait for ever
                with open(err_path) as err:
                    raise SystemExit(f"the benchmark daemon exited with {child.returncode}: {err.read()[-800:]}")
            time.sleep(0.05)
        t_start = time.monotonic()
        marks, last_hour, rss_at = 0, 0, {}
        with connect(sock) as c:
            sim_start = None
            while True:
                stats = c.stats()
                if stats["newest_ns"] is None:
                    time.sleep(0.05)
                    continue
                sim_start = sim_start or stats["oldest_ns"]
                sim_h = (stats["newest_ns"] - sim_start) / 3600e9
                answer_like(c, stats["newest_ns"])
                marks += 2
                if int(sim_h) > last_hour:
                    last_hour = int(sim_h)
                    rss_at[last_hour] = rss_mib(child.pid)
                if stats["samples_total"] >= int(hours * 3600 * RATE_HZ):
                    break
                time.sleep(0.05)
            final = c.stats()
        elapsed = time.monotonic() - t_start
        rss_end = rss_mib(child.pid)
        child.terminate()
        child.wait(10)
    print(f"daemon memory over {hours:g} simulated hours at {RATE_HZ} Hz ({final['samples_total']:,} samples, "
          f"{marks:,} marks, raw log on) in {elapsed:.0f} s of wall time")
    for h in sorted(rss_at):
        if h in (1, 2, 4, 8, 12, 16, 20, 24) or h == max(rss_at):
            print(f"  RSS after {h:>2} h: {rss_at[h]:6.1f} MiB")
    grown = rss_end - rss_at.get(1, rss_end)
    print(f"memory: daemon RSS after {hours:g} h at 1 kHz (simulated)   {rss_end:8.1f} MiB  target <= {TARGET_MIB:g} MiB, "
          f"ratio {rss_end / TARGET_MIB:.2f} {'OK' if rss_end <= TARGET_MIB else 'OVER'}")
    print(f"memory: daemon RSS growth from hour 1 to hour {hours:g}      {grown:8.1f} MiB  "
          f"(ring {final['buffer_bytes'] / 2**20:.1f} MiB, horizon {final['buffer_capacity'] / RATE_HZ:.0f} s)")
    lost = int(hours * 3600 * RATE_HZ) - final["samples_total"]
    print(f"ingest: samples lost over the day                   {lost:8d}          target == 0")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--daemon"]:
        run_daemon(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        main(float(sys.argv[1]) if len(sys.argv) > 1 else 24.0)
