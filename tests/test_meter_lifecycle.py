"""The daemon as a hostile neighbour and a flaky parent would treat it: signal bursts, a parent SIGKILLed, clients
that never speak, drip bytes, vanish, or take every slot. Real daemon subprocesses on real Unix sockets."""

from __future__ import annotations

import contextlib
import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.meter import protocol as P
from bench.meter.address import MeterAddress
from bench.meter.client import connect
from bench.meter.local import spawn_daemon
from bench.meter.transport import Unreachable, open_stream

HELLO = P.encode(P.Hello(role="client", software="test"))


def raw(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(path)
    return s


def session(path: str) -> tuple[socket.socket, object]:
    """A client past its hello, on a raw socket."""
    s = raw(path)
    f = s.makefile("rb")
    s.sendall(HELLO)
    assert json.loads(f.readline())["op"] == "hello"
    return s, f


def evicted(s: socket.socket) -> bool:
    """The daemon told this session it gave its slot away, and closed it."""
    readable, _, _ = select.select([s], [], [], 0)
    return bool(readable) and b'"reason":"evicted:' in s.recv(4096, socket.MSG_PEEK)


def exited_within(pid: int, seconds: float) -> bool:
    """The process is gone (or a zombie nobody reaped yet: it has stopped running) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


def test_a_burst_of_sigterms_stops_the_daemon_cleanly_every_time(tmp_path):
    for run in range(3):
        log_dir = tmp_path / f"log{run}"
        with spawn_daemon("sim", {"rate_hz": 1000, "batch_s": 0.01}, str(tmp_path / f"m{run}.sock"),
                          log_dir=log_dir) as d:
            for _ in range(50):  # the old handler took a lock: a second signal inside it hung the daemon
                os.kill(d.pid, signal.SIGTERM)
            t0 = time.monotonic()
            assert d.process.wait(timeout=5) == 0
            assert time.monotonic() - t0 < 2.0
        assert list(log_dir.glob("*.csv.sha256")), "a clean shutdown seals its raw log"


PARENT = """
import sys, time
from bench.meter.local import spawn_daemon
with spawn_daemon("sim", {"rate_hz": 1000, "batch_s": 0.01}, log_dir=sys.argv[1]) as d:
    print(d.pid, d.config.runtime_dir, flush=True)
    time.sleep(120)
"""


def _orphaned_daemon(log_dir: Path, env: dict | None = None) -> tuple[int, str]:
    """A daemon whose parent was SIGKILLed (no handler, no cleanup in the parent) while samples were flowing:
    its pid and private directory."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(log_dir)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        pid_text, runtime = parent.stdout.readline().split()
        time.sleep(0.5)  # samples flowing into the raw log
    finally:
        parent.kill()
        parent.wait()
    return int(pid_text), runtime


def test_daemon_stops_within_two_seconds_of_its_parents_death_and_never_writes_after(tmp_path):
    log_dir = tmp_path / "meter"
    pid, runtime = _orphaned_daemon(log_dir)
    t0 = time.monotonic()
    assert exited_within(pid, 2.0), "the daemon outlived its parent by more than 2 s"
    stopped_after = time.monotonic() - t0
    files = sorted(log_dir.glob("*.csv"))
    sizes = {f: f.stat().st_size for f in files}
    time.sleep(1.0)
    assert {f: f.stat().st_size for f in sorted(log_dir.glob("*.csv"))} == sizes  # nothing appended later
    sidecar = files[-1].with_name(files[-1].name + ".sha256")
    assert sidecar.exists(), "the daemon shut down cleanly (its last raw log is sealed)"
    assert not os.path.exists(runtime), "the private socket directory is removed by the daemon itself"
    assert stopped_after < 2.0


def test_a_shutdown_that_hangs_still_ends_within_two_seconds_of_the_parents_death(tmp_path):
    """A vendor library that leaves a non-daemon thread makes interpreter exit wait for it forever (the orphan
    that once needed a SIGKILL): the process is still gone in time, with its raw log sealed first."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import threading\n"
                                           "threading.Thread(target=threading.Event().wait, name='vendor').start()\n")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), str(site)]))
    log_dir = tmp_path / "meter"
    pid, _ = _orphaned_daemon(log_dir, env)
    try:
        assert exited_within(pid, 2.0), "a hung shutdown kept the daemon alive after its parent's death"
        assert list(log_dir.glob("*.csv.sha256")), "the raw log was sealed before the forced exit"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # a failed test leaves no hung daemon behind


def test_a_parent_pid_that_names_another_process_is_refused_at_start(tmp_path):
    """The parent died before the daemon watched it and its pid now names someone else: never watch that one."""
    from bench.meter.config import DaemonConfig, dump

    stranger = subprocess.Popen(["sleep", "30"])
    try:
        cfg = dump(DaemonConfig(driver="sim", socket_path=str(tmp_path / "m.sock"), parent_pid=stranger.pid),
                   tmp_path / "daemon.toml")
        proc = subprocess.run([sys.executable, "-m", "bench.meter", "--config", str(cfg)], capture_output=True,
                              text=True, timeout=30)
    finally:
        stranger.kill()
        stranger.wait()
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == f"error: the process that started this daemon (pid {stranger.pid}) is already gone"


def test_hello_deadline_and_idle_timeout_free_their_slots(tmp_path):
    sock = str(tmp_path / "m.sock")
    with spawn_daemon("sim", {"rate_hz": 100}, sock, hello_timeout_s=0.5, idle_timeout_s=1.0) as d:
        silent = raw(sock)
        t0 = time.monotonic()
        reply = json.loads(silent.makefile("rb").readline())
        assert reply["error"]["code"] == P.HELLO_TIMEOUT and "no hello within 0.5 s" in reply["error"]["message"]
        assert 0.4 < time.monotonic() - t0 < 2.0 and silent.recv(100) == b""
        idle, f = session(sock)
        t0 = time.monotonic()
        assert json.loads(f.readline()) == {"event": "end", "reason": "idle: no request for 1 s"}  # then it closes
        assert f.readline() == b"" and 0.9 < time.monotonic() - t0 < 3.0
        drip, _ = session(sock)  # bytes that never make a request are not activity
        t0 = time.monotonic()
        with pytest.raises(OSError):
            for _ in range(40):
                drip.sendall(b"{")
                time.sleep(0.1)
        assert time.monotonic() - t0 < 3.0
        with d.connect() as c:
            stats = c.stats()
        assert stats["hello_timeouts"] == 1 and stats["idle_closed"] == 2


def test_busy_is_always_read_as_a_reply_and_vanishing_clients_cannot_crash_it(tmp_path):
    sock = str(tmp_path / "m.sock")
    with spawn_daemon("sim", {"rate_hz": 100}, sock, evict_idle_s=60) as d:
        held = [session(sock) for _ in range(32)]
        for _ in range(20):  # the refusal is a line the client reads, never EPIPE or a reset
            s = raw(sock)
            s.sendall(HELLO)
            reply = json.loads(s.makefile("rb").readline())
            assert reply["error"]["code"] == P.BUSY and "limit 32" in reply["error"]["message"]
            s.close()
        for _ in range(50):  # connect and vanish at once, with every slot taken: this used to kill the daemon
            s = raw(sock)
            s.sendall(HELLO)
            s.close()
        free_later = threading.Timer(0.5, lambda: held.pop()[0].close())
        free_later.start()
        with connect(d.address, retry_s=10) as c:  # the client retries a busy daemon until a slot frees
            assert c.info()["driver"] == "sim"
            assert c.stats()["refused_busy"] >= 20
        for s, _ in held:
            s.close()


def test_idle_sessions_give_way_to_a_newcomer(tmp_path):
    sock = str(tmp_path / "m.sock")
    with spawn_daemon("sim", {"rate_hz": 100}, sock, evict_idle_s=0.3) as d:
        held = [session(sock) for _ in range(32)]
        time.sleep(0.5)
        with d.connect(retry_s=0) as c:
            assert c.stats()["evicted_idle"] == 1
        time.sleep(0.1)
        assert sum(1 for s, _ in held if evicted(s)) == 1  # the longest-idle one gave its slot up
        for s, _ in held:
            s.close()


def test_connect_honours_its_timeout_when_the_backlog_is_full(tmp_path):
    path = str(tmp_path / "full.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(0)
    queued = []
    try:
        for _ in range(8):  # fill the backlog: a non-blocking connect now fails at once with EAGAIN
            s = socket.socket(socket.AF_UNIX)
            s.setblocking(False)
            try:
                s.connect(path)
                queued.append(s)
            except BlockingIOError:
                s.close()
                break
        t0 = time.monotonic()
        with pytest.raises(Unreachable, match="did not accept the connection in time"):
            open_stream(MeterAddress(path=path), timeout_s=1.0)
        assert time.monotonic() - t0 >= 0.9  # waited for its timeout, not failed at the first EAGAIN
        threading.Timer(0.3, lambda: [listener.accept()[0].close() for _ in range(len(queued) + 1)]).start()
        open_stream(MeterAddress(path=path), timeout_s=5.0).close()  # room made within the timeout: connected
    finally:
        for s in queued:
            s.close()
        listener.close()


def test_spawned_daemons_leave_nothing_in_tmp(tmp_path, monkeypatch):
    import tempfile

    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))  # this test's own /tmp: others' runs share the real one
    for _ in range(2):
        with spawn_daemon("sim", {"rate_hz": 100}) as d, d.connect() as c:
            c.info()
    assert list(private.iterdir()) == []


class Nuisance(threading.Thread):
    """One misbehaving client, picked at random: silent, dripping, vanishing, never reading, or flooding."""

    def __init__(self, path: str, rng: random.Random, until: float) -> None:
        super().__init__(daemon=True)
        self.path, self.rng, self.until = path, rng, until

    def run(self) -> None:
        while time.monotonic() < self.until:
            try:
                getattr(self, self.rng.choice(["silent", "idle", "drip", "vanish", "half", "deaf", "flood"]))()
            except (OSError, AssertionError, KeyError, ValueError):
                pass  # the daemon cut us off or refused us: that is the point

    def silent(self) -> None:  # connect, never say hello
        s = raw(self.path)
        time.sleep(self.rng.uniform(0.1, 1.5))
        s.close()

    def idle(self) -> None:  # hello, then sit on the slot
        s, _ = session(self.path)
        time.sleep(self.rng.uniform(0.1, 3.0))
        s.close()

    def drip(self) -> None:  # bytes that never make a request
        s, _ = session(self.path)
        for _ in range(self.rng.randint(1, 30)):
            s.sendall(b'{"id":1,"op"'[: self.rng.randint(1, 5)])
            time.sleep(0.1)
        s.close()

    def vanish(self) -> None:  # connect (maybe hello) and go at once
        s = raw(self.path)
        if self.rng.random() < 0.5:
            s.sendall(HELLO)
        s.close()

    def half(self) -> None:  # a request, gone before the reply
        s, _ = session(self.path)
        s.sendall(b'{"id":1,"op":"energy","start_ns":0,"end_ns":1,"wait_s":2}\n')
        s.close()

    def deaf(self) -> None:  # pipelined requests, replies never read: the daemon's sends must time out
        s, _ = session(self.path)
        s.setblocking(False)
        line = b'{"id":1,"op":"info"}\n' * 200
        end = time.monotonic() + self.rng.uniform(0.5, 2.0)
        while time.monotonic() < end:
            try:
                s.send(line)
            except BlockingIOError:
                time.sleep(0.05)
        s.close()

    def flood(self) -> None:  # many connections at once, no hello
        socks = [raw(self.path) for _ in range(self.rng.randint(5, 20))]
        time.sleep(self.rng.uniform(0.1, 1.0))
        for s in socks:
            s.close()


def test_idle_slow_and_vanishing_clients_never_lock_out_a_well_behaved_one(tmp_path):
    sock = str(tmp_path / "m.sock")
    rng = random.Random(2024)
    with spawn_daemon("sim", {"rate_hz": 200}, sock, hello_timeout_s=0.5, idle_timeout_s=2.0, evict_idle_s=0.5,
                      send_timeout_s=0.5) as d:
        time.sleep(0.5)  # history for the well-behaved client's windows
        until = time.monotonic() + 5.0
        crowd = [Nuisance(sock, random.Random(rng.random()), until) for _ in range(40)]
        for t in crowd:
            t.start()
        served, worst = 0, 0.0
        while time.monotonic() < until:
            t0 = time.monotonic()
            with connect(d.address, timeout_s=5.0, retry_s=5.0) as c:  # a well-behaved client: hello, ask, go
                now = time.monotonic_ns()
                assert c.energy(now - 300_000_000, now - 200_000_000, wait_s=1.0).coverage == 1.0
            worst = max(worst, time.monotonic() - t0)
            served += 1
            time.sleep(0.1)
        for t in crowd:
            t.join(10)
        with d.connect() as c:
            stats = c.stats()
        assert d.process.poll() is None
    assert served >= 12 and worst < 5.0
    assert stats["hello_timeouts"] > 0 and stats["idle_closed"] + stats["evicted_idle"] > 0


def test_a_long_outage_stalls_only_its_first_call_and_ends_with_one_outage(tmp_path):
    from bench.meter.client import MeterUnavailable

    sock = str(tmp_path / "m.sock")
    with spawn_daemon("sim", {"rate_hz": 100}, sock) as d:
        c = connect(d.address, retry_s=1.0)
        c.info()
        d.process.kill()
        d.process.wait()
    t0 = time.monotonic()
    with pytest.raises(MeterUnavailable, match="unreachable since the outage began"):
        c.info()  # bounded backoff for the first call of the outage...
    assert 0.9 < time.monotonic() - t0 < 5.0
    t0 = time.monotonic()
    with pytest.raises(MeterUnavailable):
        c.info()  # ...then one attempt per call, so a long outage does not stall every answer
    assert time.monotonic() - t0 < 0.5 and c.current_outage is not None and c.outages() == []
    with spawn_daemon("sim", {"rate_hz": 100}, sock):
        assert c.info()["driver"] == "sim"
        (outage,) = c.outages()
    assert outage.restored_ns > outage.noticed_ns > outage.last_ok_ns and outage.attempts >= 2
    assert c.current_outage is None
    c.close()


def test_a_quiet_client_keeps_its_session_and_a_closed_one_says_why(tmp_path):
    sock = str(tmp_path / "m.sock")
    with spawn_daemon("sim", {"rate_hz": 100}, sock, idle_timeout_s=1.0) as d:
        with d.connect(keepalive_s=0.3) as kept, d.connect(keepalive_s=0) as dropped:
            time.sleep(1.8)  # a long answer: longer than the daemon's idle timeout
            assert kept.info()["driver"] == "sim" and kept.outages() == []  # the keep-alive held the session
            assert dropped.info()["driver"] == "sim"  # reconnected; the outage says the daemon closed it, and why
            (outage,) = dropped.outages()
            assert "closed this session (idle: no request for 1 s)" in outage.reason
