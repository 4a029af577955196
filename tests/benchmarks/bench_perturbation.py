"""Does the toolkit perturb what it measures? CPU used by the runner and the meter daemon while an answer runs.

Set-up, all real: the Ollama-API test server in its own process streams a scripted answer at a Pi-like decode
rate (5 tokens/s, 10 s an answer; the server's own CPU is the "model" and is not counted), the meter daemon runs
with its raw log on, and the runner's `ask()` does what `bench run` does per answer (streaming request with host
stamps, three energy windows, temperature reads, a trace). Meters: the sim driver, and the ina-serial driver reading
the bridge firmware's protocol from an emulated device on a pty (the device runs in its own process, not counted),
at 1 kHz (the firmware's default) and 100 Hz. CPU is read from /proc/<pid>/stat for the daemon and from
process_time() for the runner, over the same wall-clock span. Target: runner + daemon <= 0.5 % of one core.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bench.backends.ollama import OllamaBackend  # noqa: E402
from bench.catalog import models  # noqa: E402
from bench.meter.client import connect  # noqa: E402
from bench.meter.local import spawn_daemon  # noqa: E402
from bench.records import Item  # noqa: E402
from bench.runner import Task, ask  # noqa: E402
from bench.spec import load_spec  # noqa: E402
from runner_support import PACED_MODEL, paced_ollama_server  # noqa: E402

WORDS = 50
DELAY_S = 0.2
ANSWERS = 3
METERS = [("sim", 1000), ("sim", 100), ("ina-serial", 1000), ("ina-serial", 250), ("ina-serial", 100)]
TARGET_PCT = 0.5
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _run_ina_device(link: str, rate_hz: int, ready: "multiprocessing.synchronize.Event",
                    stop: "multiprocessing.synchronize.Event") -> None:
    from meter_emulators import InaDevice

    with InaDevice(link, rate_hz=rate_hz, tick_s=0.01):
        ready.set()
        stop.wait()


@contextlib.contextmanager
def meter_source(driver: str, rate_hz: int, tmp: str) -> Iterator[dict]:
    """The daemon options for ``driver`` at ``rate_hz``; for ina-serial, an emulated bridge in another process."""
    if driver == "sim":
        yield {"mode": "constant", "watts": 4.0, "rate_hz": rate_hz, "seed": 1}
        return
    link = os.path.join(tmp, "ttyINA")
    ready, stop = multiprocessing.Event(), multiprocessing.Event()
    device = multiprocessing.Process(target=_run_ina_device, args=(link, rate_hz, ready, stop), daemon=True)
    device.start()
    try:
        if not ready.wait(10):
            raise RuntimeError("the emulated ina-serial device did not start")
        yield {"port": link, "rate_hz": rate_hz}
    finally:
        stop.set()
        device.join(10)


def measure(driver: str, meter_hz: int) -> tuple[float, float, float]:
    """(wall s, runner % of a core, daemon % of a core) over ANSWERS answers."""
    entry = models()[PACED_MODEL]
    spec = load_spec("smoke")
    item = Item("gsm8k", "bench-1", {"question": "What is 2 + 3?", "answer": "#### 5"}, "5")
    task = Task(entry, item, "What is 2 + 3?")
    reply = " ".join(f"w{i}" for i in range(WORDS - 1)) + " <ANS>42</ANS>"
    with tempfile.TemporaryDirectory() as tmp, paced_ollama_server(DELAY_S, reply) as host, \
            meter_source(driver, meter_hz, tmp) as opts:
        sock = os.path.join(tmp, "m.sock")
        with spawn_daemon(driver, opts, sock, log_dir=os.path.join(tmp, "log")) as daemon:
            meter = connect(sock)
            backend = OllamaBackend(host, warmup=False)
            time.sleep(2.0)  # let the daemon settle before measuring
            rows = []
            for i in range(ANSWERS):
                wall0, run0, dae0 = time.monotonic(), time.process_time(), cpu_s(daemon.pid)
                record = ask(backend, meter, spec, "bench", 2.85, task, keep_trace=(i == 0))
                wall = time.monotonic() - wall0
                run_cpu, dae_cpu = time.process_time() - run0, cpu_s(daemon.pid) - dae0
                assert record.status == "ok", record.reason
                rows.append((wall, run_cpu, dae_cpu))
            meter.close()
    wall = sum(r[0] for r in rows)
    return wall, 100 * sum(r[1] for r in rows) / wall, 100 * sum(r[2] for r in rows) / wall


def main() -> None:
    print(f"perturbation: {ANSWERS} answers of {WORDS} tokens at {1 / DELAY_S:.0f} tok/s each, meter daemon with raw log")
    for driver, hz in METERS:
        wall, run_pct, dae_pct = measure(driver, hz)
        total = run_pct + dae_pct
        print(f"  {driver:>10} {hz:>5} Hz: runner {run_pct:.3f} % + daemon {dae_pct:.3f} % = {total:.3f} % of one core "
              f"over {wall:.0f} s (target <= {TARGET_PCT} %, ratio {total / TARGET_PCT:.2f}) "
              f"{'OK' if total <= TARGET_PCT else 'OVER'}")


if __name__ == "__main__":
    main()
