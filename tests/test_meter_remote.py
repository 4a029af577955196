"""The meter on another machine: TLS 1.3 with pinned certificates (Python's ssl, keys from `cryptography`), the
meter host's clock estimated from timed round trips, and every window converted at the request layer. The daemon
plays a meter host with a synthetic clock (known offset and drift), so the estimate can be checked against truth."""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.errors import MeterError
from bench.meter import tls
from bench.meter.address import MeterAddress
from bench.meter.client import connect
from bench.meter.local import spawn_daemon
from bench.report.clock import notes as clock_notes
from bench.results import answers_frame
from runner_support import paced_ollama_server, paced_spec, run_bench

OFFSET_S, DRIFT_PPM = 98_765.4321, 80.0  # the meter host booted a day earlier; its crystal runs 80 ppm fast


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def keys(tmp_path):
    """Both machines' key directories, each pinning the other (what `bench meter tls trust` does)."""
    meter, pi = tmp_path / "meter-tls", tmp_path / "pi-tls"
    tls.init(meter, "meter-host")
    tls.init(pi, "pi")
    tls.trust(meter, (pi / tls.CERT_FILE).read_bytes())
    tls.trust(pi, (meter / tls.CERT_FILE).read_bytes())
    return meter, pi


@pytest.fixture
def remote(tmp_path, keys):
    """A daemon listening on TLS with a skewed clock, and the address the measured machine uses."""
    meter_dir, pi_dir = keys
    port = free_port()
    with spawn_daemon("sim", {"mode": "busy", "idle_w": 3.0, "load_w": 7.0, "rate_hz": 1000, "batch_s": 0.02},
                      str(tmp_path / "m.sock"), listen=f"127.0.0.1:{port}", tls_dir=str(meter_dir),
                      clock_offset_s=OFFSET_S, clock_drift_ppm=DRIFT_PPM) as d:
        yield d, MeterAddress(host="127.0.0.1", port=port, tls_dir=str(pi_dir)), port


def truth_offset_ns(synthetic: dict, t_local: int) -> float:
    return synthetic["offset"] + synthetic["drift"] * (t_local - synthetic["origin"])


def test_windows_are_converted_to_the_meter_hosts_clock_within_their_bound(remote):
    d, address, _ = remote
    with connect(address) as c:
        synthetic = c.info()["synthetic_clock"]
        time.sleep(0.3)
        for _ in range(3):
            begin = time.monotonic_ns()
            c.mark("answer-begin remote", begin)  # the sim draws load between the marks, on the meter's clock
            time.sleep(0.6)
            end = time.monotonic_ns()
            c.mark("answer-end remote", end)
            w = c.energy(begin, end, wait_s=2.0)
            assert w.coverage == 1.0
            assert w.energy_j == pytest.approx(7.0 * (end - begin) / 1e9, rel=2e-3)  # load exactly inside the window
            err = abs(w.clock_offset_ns - truth_offset_ns(synthetic, begin))
            assert err <= w.clock_bound_ns and w.clock_bound_ns < 1_000_000
            before = c.energy(begin - 200_000_000, begin - 2_000_000, wait_s=0)
            assert before.mean_w == pytest.approx(3.0, rel=1e-6)  # idle right up to the converted edge
            time.sleep(0.3)
        gaps = c.energy_details(begin, end + 10**9 // 2, wait_s=0)  # replies are converted back, nested too
        assert abs(gaps["gaps_ns"][-1][1] - (end + 10**9 // 2)) <= 2 * gaps["clock_conversion"]["bound_ns"]
        assert d.process.poll() is None


def test_samples_and_marks_come_back_on_the_local_clock(remote):
    _, address, _ = remote
    with connect(address) as c:
        time.sleep(0.2)
        now = time.monotonic_ns()
        t_ns = [t for t, _ in c.samples(now - 100_000_000, now, max_points=200)]
        assert t_ns and all(now - 100_000_000 - 10**6 <= t <= now + 10**6 for t in t_ns)
        mark = c.call("mark", label="x", t_ns=now)  # there and back: the model may move by its bound in between
        assert abs(mark["t_ns"] - now) <= 2 * mark["clock_conversion"]["bound_ns"]


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_a_wrong_key_either_way_is_one_line(remote, tmp_path):
    d, address, port = remote
    stranger = tmp_path / "stranger"
    tls.init(stranger, "stranger")
    tls.trust(stranger, (Path(d.config.tls_dir) / tls.CERT_FILE).read_bytes())  # it pins the meter, not vice versa
    line = one_line_error(run_bench("meter", "status", "--socket", f"tls://127.0.0.1:{port}",
                                    env={"BENCH_METER_TLS_DIR": str(stranger)}))
    assert "refused this machine's certificate sha256:" in line and "bench meter tls trust" in line
    impostor = tmp_path / "impostor"  # the measured machine pins some other meter host
    tls.init(impostor, "impostor")
    tls.trust(impostor, (tmp_path / "stranger" / tls.CERT_FILE).read_bytes())
    with pytest.raises(MeterError, match="presented a certificate that is not pinned"):
        connect(MeterAddress(host="127.0.0.1", port=port, tls_dir=str(impostor)), retry_s=0)
    with connect(address) as c:
        assert c.stats()["tls_failures"] >= 2


def test_bad_listen_addresses_and_open_ports_are_refused_in_one_line(tmp_path, keys):
    meter_dir, _ = keys
    base = ("meter", "serve", "--driver", "sim", "--socket", str(tmp_path / "m.sock"))
    assert "expected HOST:PORT" in one_line_error(run_bench(*base, "--listen", "meter-host"))
    assert "expected HOST:PORT" in one_line_error(run_bench(*base, "--listen", "0.0.0.0:99999"))
    assert "needs --tls-dir" in one_line_error(run_bench(*base, "--listen", "127.0.0.1:7461"))
    assert "no interface of this machine has that address" in one_line_error(
        run_bench(*base, "--listen", "192.0.2.1:7461", "--tls-dir", str(meter_dir)))
    lonely = tmp_path / "lonely"
    tls.init(lonely, "lonely")  # keys, but nobody pinned: an open port nobody can authenticate to is not served
    assert "no trusted client" in one_line_error(run_bench(*base, "--listen", "127.0.0.1:7461", "--tls-dir", str(lonely)))


def test_a_window_from_the_future_is_one_line(tmp_path):
    with spawn_daemon("sim", {"rate_hz": 100}, str(tmp_path / "m.sock")) as d:
        now = time.monotonic_ns()
        line = one_line_error(run_bench("meter", "energy", "--socket", d.socket_path, "--start-ns", str(now),
                                        "--end-ns", str(now + 30 * 10**9), "--wait-s", "0.1"))
    assert re.search(r"\(bad_request\): window ends \d+\.\d+ s after the daemon's clock now", line)
    assert "a window from the future" in line


def test_keys_are_made_and_exchanged_with_the_cli(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    for d in (a, b):
        assert "sha256:" in run_bench("meter", "tls", "init", "--dir", d, "--name", Path(d).name, check=True).stdout
    pem = run_bench("meter", "tls", "export", "--dir", a, check=True).stdout
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    pinned = subprocess.run([sys.executable, "-m", "bench", "meter", "tls", "trust", "-", "--dir", b], input=pem,
                            capture_output=True, text=True, env=env, timeout=60)
    assert pinned.returncode == 0 and tls.load(a).fingerprint in pinned.stdout
    assert tls.load(a).fingerprint in run_bench("meter", "tls", "show", "--dir", b, check=True).stdout
    assert "already exists" in one_line_error(run_bench("meter", "tls", "init", "--dir", a))
    os.chmod(Path(a) / tls.KEY_FILE, 0o644)
    assert "readable by others" in one_line_error(run_bench("meter", "tls", "show", "--dir", a))


def test_a_run_against_a_remote_meter_records_each_windows_clock_and_flags_by_the_specs_tolerance(remote, tmp_path):
    d, address, port = remote
    with paced_ollama_server(0.05) as host:
        spec = paced_spec(tmp_path, host, limit=1)
        text = spec.read_text()
        spec.write_text(text[:text.index("[meter]")] + f'[meter]\nsocket = "tls://127.0.0.1:{port}"\n'
                        "clock_tolerance_ms = 0.000001\n\n" + text[text.index("[idle]"):])
        proc = run_bench("run", "--spec", str(spec), "--out", str(tmp_path / "out"), "--no-progress",
                         env={"BENCH_METER_TLS_DIR": address.tls_dir})
    assert proc.returncode == 0, proc.stderr[-2000:]
    with connect(address) as c:
        synthetic = c.info()["synthetic_clock"]
    db = sqlite3.connect(tmp_path / "out" / "results.db")
    rows = db.execute("SELECT start_ns, clock_offset_ns, clock_bound_ns, clock_flag, coverage FROM energy_windows").fetchall()
    assert len(rows) == 6  # two answers, three windows each, all converted and recorded
    for start, offset, bound, flag, coverage in rows:
        assert abs(offset - truth_offset_ns(synthetic, start)) <= bound < 1_000_000  # within 1 ms, and honest
        assert flag == 1 and coverage == 1.0  # a 1 ns tolerance flags every window; 1 ms (the default) none
    frame = answers_frame(tmp_path / "out" / "results.db")
    assert (frame["clock_flag"] == 1).all() and (frame["clock_bound_ms"] < 1.0).all()
    (note,) = clock_notes(frame)  # what the report says next to its energy notes
    assert "2 answers' windows were converted" in note and "2 answers exceeded the spec's clock tolerance" in note
    local = frame.assign(clock_bound_ms=float("nan"), clock_flag=float("nan"))
    assert clock_notes(local) == []  # a meter on the measured machine: nothing to say
