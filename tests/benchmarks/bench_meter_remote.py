"""Alignment of a remote meter's windows. Run: .venv/bin/python tests/benchmarks/bench_meter_remote.py [SECONDS]

The daemon plays a meter host: TLS 1.3 on a port, its clock offset by a day and drifting by +80 ppm (then -80),
known to this benchmark only (the client sees nothing but timed round trips). The client behaves like a runner:
an answer every second or so (begin mark, 0.2-3 s of "answer", end mark, its three windows in one request),
the 10 s clock sync between. For every window the offset the client used is compared with the injected truth at
the window's start. Two network paths: loopback, and a relay that delays each direction like a loaded LAN
(to the meter 0.1-0.4 ms, back 0.1-3 ms: the asymmetry NTP cannot see and the bound must cover).
Target (issue 15 item 4): alignment error p50 and p99 <= 1 ms; and never beyond the bound the client reports.
"""

from __future__ import annotations

import os
import random
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT)]

from bench.meter import tls  # noqa: E402
from bench.meter.address import MeterAddress  # noqa: E402
from bench.meter.client import connect  # noqa: E402
from bench.meter.local import spawn_daemon  # noqa: E402

OFFSET_S = 86_400.0
TARGET_MS = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DelayRelay:
    """A TCP relay that delays every chunk, by a random delay per direction (bytes pass untouched: TLS is end to end)."""

    def __init__(self, target_port: int, up_ms: tuple[float, float], down_ms: tuple[float, float]) -> None:
        self.target, self.up, self.down = target_port, up_ms, down_ms
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.rng = random.Random(9)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            for src, dst, ms in ((client, server, self.up), (server, client, self.down)):
                threading.Thread(target=self._pipe, args=(src, dst, ms), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, ms: tuple[float, float]) -> None:
        try:
            while chunk := src.recv(65536):
                time.sleep(self.rng.uniform(*ms) / 1e3)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


def keys(tmp: str) -> tuple[str, str]:
    meter, pi = os.path.join(tmp, "meter-tls"), os.path.join(tmp, "pi-tls")
    tls.init(meter, "meter-host")
    tls.init(pi, "pi")
    tls.trust(meter, Path(pi, tls.CERT_FILE).read_bytes())
    tls.trust(pi, Path(meter, tls.CERT_FILE).read_bytes())
    return meter, pi


def run(seconds: float, drift_ppm: float, relay: tuple | None) -> dict[str, np.ndarray]:
    """Errors and bounds (ns) of the offsets used for every window of a runner-like session."""
    rng = random.Random(1)
    errors, bounds = [], []
    with tempfile.TemporaryDirectory() as tmp:
        meter_dir, pi_dir = keys(tmp)
        port = free_port()
        opts = {"mode": "busy", "idle_w": 2.85, "load_w": 6.9, "rate_hz": 1000, "batch_s": 0.05}
        with spawn_daemon("sim", opts, os.path.join(tmp, "m.sock"), listen=f"127.0.0.1:{port}", tls_dir=meter_dir,
                          clock_offset_s=OFFSET_S, clock_drift_ppm=drift_ppm):
            hop = DelayRelay(port, *relay) if relay else None
            address = MeterAddress(host="127.0.0.1", port=hop.port if hop else port, tls_dir=pi_dir)
            with connect(address) as c:
                truth = c.info()["synthetic_clock"]
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    begin = time.monotonic_ns()
                    c.mark("answer-begin bench", begin)
                    time.sleep(rng.uniform(0.2, 3.0))
                    last = time.monotonic_ns()
                    c.mark("answer-end bench", last)
                    first = begin + (last - begin) // 5
                    for w in c.windows([(begin, last, first), (begin, first), (first, last)]):
                        true = truth["offset"] + truth["drift"] * (w.start_ns - truth["origin"])
                        errors.append(abs(w.clock_offset_ns - true))
                        bounds.append(w.clock_bound_ns)
                    time.sleep(rng.uniform(0.1, 1.5))
            if hop:
                hop.close()
    return {"error": np.array(errors), "bound": np.array(bounds)}


def main(seconds: float = 40.0) -> None:
    print(f"remote meter alignment: {seconds:.0f} s of runner-like traffic per row, meter clock {OFFSET_S:.0f} s "
          f"ahead, drifting; error = |offset used - injected truth| at each window's start")
    paths = {"loopback": None, "relay (to meter 0.1-0.4 ms, back 0.1-3 ms)": ((0.1, 0.4), (0.1, 3.0))}
    for name, relay in paths.items():
        for drift in (80.0, -80.0):
            r = run(seconds, drift, relay)
            e_ms, b_ms = r["error"] / 1e6, r["bound"] / 1e6
            p50, p99 = np.percentile(e_ms, 50), np.percentile(e_ms, 99)
            within = float(np.mean(r["error"] <= r["bound"]))
            ok = p99 <= TARGET_MS and within == 1.0
            print(f"  {name}, drift {drift:+.0f} ppm, {len(e_ms)} windows: error p50 {p50:.4f} ms, p99 {p99:.4f} ms, "
                  f"max {e_ms.max():.4f} ms (target p50/p99 <= {TARGET_MS:g} ms, ratio {p99 / TARGET_MS:.3f}); "
                  f"bound p50 {np.percentile(b_ms, 50):.4f} ms p99 {np.percentile(b_ms, 99):.4f} ms; "
                  f"error within bound {within:.0%} {'OK' if ok else 'OVER'}")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 40.0)
