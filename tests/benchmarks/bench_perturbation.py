"""Does the toolkit perturb what it measures? CPU used on the measured machine while an answer runs.

Set-up, all real: the Ollama-API test server in its own process streams a scripted answer at a Pi-like decode
rate (5 tokens/s, 10 s an answer; the server's own CPU is the "model" and is not counted), and the runner does per
answer what `bench run` does (`ask()`: marks, streaming request with host stamps, the three energy windows in one
request, temperature and throttle reads, a trace for the first answer; then the answer's SQLite commit). Meters:

- remote: the paper's set-up. The daemon plays a meter host (its own process, TLS 1.3 with pinned certificates on
  a port, a synthetic clock 1 day and 80 ppm off, so the client does the whole clock conversion and its 10 s sync);
  the measured machine runs only the runner, so only the runner counts. Target: <= 0.1 % of one core.
- local ina-serial at 1000, 250 and 100 Hz: the bridge firmware's protocol from an emulated device on a pty (the
  device in its own process, not counted); runner + daemon count. Target: <= 0.5 % of one core.

CPU is process time: /proc/<pid>/stat for the daemon, process_time() for the runner, over the same wall-clock span;
each row repeats ANSWERS answers. Then the runner's CPU per answer, step by step, to show where it goes.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bench import results  # noqa: E402
from bench.backends.ollama import OllamaBackend  # noqa: E402
from bench.catalog import models  # noqa: E402
from bench.meter import tls  # noqa: E402
from bench.meter.address import MeterAddress  # noqa: E402
from bench.meter.client import MeterClient, connect  # noqa: E402
from bench.meter.local import spawn_daemon  # noqa: E402
from bench.records import Item  # noqa: E402
from bench.runner import Task, ask, meter_windows, record_outages  # noqa: E402
from bench.spec import load_spec  # noqa: E402
from bench.thermal import temperature_c, throttled  # noqa: E402
from runner_support import PACED_MODEL, paced_ollama_server  # noqa: E402

WORDS = 50
DELAY_S = 0.2
ANSWERS = 3
ROWS = [("remote", "sim", 1000, 0.1), ("local", "ina-serial", 1000, 0.5), ("local", "ina-serial", 250, 0.5),
        ("local", "ina-serial", 100, 0.5)]
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _run_ina_device(link: str, rate_hz: int, ready: "multiprocessing.synchronize.Event",
                    stop: "multiprocessing.synchronize.Event") -> None:
    from meter_emulators import InaDevice

    with InaDevice(link, rate_hz=rate_hz, tick_s=0.01, protocol=2):  # the firmware's binary blocks
        ready.set()
        stop.wait()


@contextlib.contextmanager
def ina_device(rate_hz: int, tmp: str) -> Iterator[dict]:
    """An emulated ina-serial bridge in another process; yields the daemon's driver options."""
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


@contextlib.contextmanager
def meter_for(where: str, driver: str, rate_hz: int, tmp: str) -> Iterator[tuple[MeterClient, int]]:
    """A connected client and the daemon's pid: a local daemon, or one playing a remote meter host over TLS."""
    sock = os.path.join(tmp, "m.sock")
    if where == "remote":
        meter_dir, pi_dir = os.path.join(tmp, "meter-tls"), os.path.join(tmp, "pi-tls")
        tls.init(meter_dir, "meter-host")
        tls.init(pi_dir, "pi")
        tls.trust(meter_dir, Path(pi_dir, tls.CERT_FILE).read_bytes())
        tls.trust(pi_dir, Path(meter_dir, tls.CERT_FILE).read_bytes())
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        opts = {"mode": "constant", "watts": 4.0, "rate_hz": rate_hz, "seed": 1}
        with spawn_daemon(driver, opts, sock, log_dir=os.path.join(tmp, "log"), listen=f"127.0.0.1:{port}",
                          tls_dir=meter_dir, clock_offset_s=86_400.0, clock_drift_ppm=80.0) as d, \
                connect(MeterAddress(host="127.0.0.1", port=port, tls_dir=pi_dir)) as c:
            yield c, d.pid
        return
    with ina_device(rate_hz, tmp) as opts, spawn_daemon(driver, opts, sock, log_dir=os.path.join(tmp, "log")) as d, \
            d.connect() as c:
        yield c, d.pid


def task(n: int = 0) -> Task:
    item = Item("gsm8k", f"bench-{n}", {"question": "What is 2 + 3?", "answer": "#### 5"}, "5")
    return Task(models()[PACED_MODEL], item, "What is 2 + 3?")


def measure(where: str, driver: str, meter_hz: int) -> tuple[float, float, float]:
    """(wall s, runner % of a core, daemon % of a core) over ANSWERS answers, each asked and committed."""
    spec = load_spec("smoke")
    reply = " ".join(f"w{i}" for i in range(WORDS - 1)) + " <ANS>42</ANS>"
    with tempfile.TemporaryDirectory() as tmp, paced_ollama_server(DELAY_S, reply) as host, \
            meter_for(where, driver, meter_hz, tmp) as (meter, daemon_pid):
        db = results.connect(Path(tmp) / "results.db")
        run, _ = results.open_run(db, "perturbation", "0" * 64, "")
        backend = OllamaBackend(host, warmup=False)
        time.sleep(2.0)  # let the daemon settle before measuring
        rows = []
        for i in range(ANSWERS):
            wall0, run0, dae0 = time.monotonic(), time.process_time(), cpu_s(daemon_pid)
            record = ask(backend, meter, spec, run.run_id, 2.85, task(i), keep_trace=(i == 0))
            results.record_answer(db, record)
            record_outages(db, run.run_id, meter)
            wall = time.monotonic() - wall0
            run_cpu, dae_cpu = time.process_time() - run0, cpu_s(daemon_pid) - dae0
            assert record.status == "ok", record.reason
            rows.append((wall, run_cpu, dae_cpu))
        db.close()
    wall = sum(r[0] for r in rows)
    return wall, 100 * sum(r[1] for r in rows) / wall, 100 * sum(r[2] for r in rows) / wall


def cpu_ms(fn, n: int) -> float:
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t0) / n * 1e3


def breakdown(n: int = 50) -> None:
    """The runner's CPU per answer, step by step, against the remote meter (the steps a remote set-up leaves)."""
    spec = load_spec("smoke")
    reply = " ".join(f"w{i}" for i in range(WORDS - 1)) + " <ANS>42</ANS>"
    with tempfile.TemporaryDirectory() as tmp, paced_ollama_server(0.0, reply) as host, \
            meter_for("remote", "sim", 1000, tmp) as (meter, _):
        backend = OllamaBackend(host, warmup=False)
        time.sleep(1.0)
        c = backend.generate(task().model, task().prompt, dict(spec.options), 30)
        db = results.connect(Path(tmp) / "results.db")
        run, _ = results.open_run(db, "perturbation", "0" * 64, "")
        record = ask(backend, meter, spec, run.run_id, 2.85, task(), keep_trace=False)
        k = iter(range(10**6))
        steps = {
            "2 marks (answer begin, end)": lambda: (meter.mark("answer-begin x"), meter.mark("answer-end x")),
            "3 windows, one request": lambda: meter_windows(meter, c),
            "trace samples (first answer of a block only)": lambda: meter.samples(c.t_send_ns, c.t_last_token_ns),
            "temperature + throttle, before and after": lambda: (temperature_c(), throttled(), temperature_c(),
                                                                 throttled()),
            "SQLite commit of the answer": lambda: results.record_answer(db, results.AnswerRecord(
                **{**record.__dict__, "item_id": f"i{next(k)}"})),
            f"streaming {WORDS} chunks (the backend's, not paced)": lambda: backend.generate(
                task().model, task().prompt, dict(spec.options), 30),
        }
        print(f"runner CPU per answer, step by step (remote meter, mean of {n}; the answer itself takes "
              f"{WORDS * DELAY_S:.0f} s, so 1 ms is {100 * 1e-3 / (WORDS * DELAY_S):.3f} % of a core):")
        for name, fn in steps.items():
            print(f"  {name:52s} {cpu_ms(fn, n):7.3f} ms")
        db.close()


def main() -> None:
    print(f"perturbation: {ANSWERS} answers of {WORDS} tokens at {1 / DELAY_S:.0f} tok/s each, meter daemon with raw log")
    for where, driver, hz, target in ROWS:
        wall, run_pct, dae_pct = measure(where, driver, hz)
        if where == "remote":
            total, what = run_pct, f"runner {run_pct:.3f} % (the daemon, {dae_pct:.3f} %, runs on the meter host)"
        else:
            total, what = run_pct + dae_pct, f"runner {run_pct:.3f} % + daemon {dae_pct:.3f} % = {run_pct + dae_pct:.3f} %"
        label = f"{where} {driver} {hz} Hz"
        print(f"  {label:>24}: {what} of one core over {wall:.0f} s (target <= {target} %, "
              f"ratio {total / target:.2f}) {'OK' if total <= target else 'OVER'}")
    breakdown()


if __name__ == "__main__":
    main()
