"""The sandbox's mechanisms: plain data across the boundary, each layer applied, the fallbacks, the refusal."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys

import pytest

from bench.errors import SandboxError
from bench.scoring import execution
from bench.scoring.child import plain
from bench.scoring.child.landlock import abi_version
from bench.scoring.execution import confinement, require, run_program
from bench.scoring.sandbox import Limits, processes_of

FAST = Limits(timeout_s=1.5)


# Plain data -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    None, True, False, 0, -7, 2 ** 80, 1.5, -0.0, float("inf"), float("-inf"), 1 + 2j, "", "é\n\x00", b"\x00\xff",
    [], (), [1, (2, 3)], (1, [2]), {"a": 1, 2: "b", (1, 2): [None]}, {1, 2}, frozenset({"x"}), [[[{"k": (1.0,)}]]],
])
def test_plain_values_survive_the_round_trip_with_their_types(value):
    back = plain.from_tagged(plain.loads(plain.dumps({"v": plain.to_tagged(value)}))["v"])
    assert back == value and type(back) is type(value)
    if isinstance(value, (list, tuple)) and value:
        assert [type(x) for x in back] == [type(x) for x in value]


def test_nan_survives_and_bool_int_float_stay_apart():
    assert math.isnan(plain.from_tagged(plain.to_tagged(float("nan"))))
    assert [type(x) for x in plain.from_tagged(plain.to_tagged([True, 1, 1.0]))] == [bool, int, float]


def test_objects_that_are_not_plain_data_are_refused_by_name():
    class AlwaysEqual:
        def __eq__(self, other):
            return True

    for value in (AlwaysEqual(), [AlwaysEqual()], print, object(), {1: AlwaysEqual()}, {1: 2}.keys()):
        with pytest.raises(plain.NotPlain):
            plain.to_tagged(value)
    deep: list = []
    for _ in range(200):
        deep = [deep]
    with pytest.raises(plain.NotPlain):
        plain.to_tagged(deep)


def test_subclasses_of_builtin_scalars_travel_as_the_builtin_value():
    class Sneaky(int):
        def __eq__(self, other):
            return True

    back = plain.from_tagged(plain.to_tagged(Sneaky(3)))
    assert type(back) is int and back == 3 and back != 4


@pytest.mark.parametrize("line", [b"not json\n", b"[1, 2]\n", b'{"x": NaN}\n', b"\xff\xfe\n", b"1" * 5000 + b"\n"])
def test_malformed_lines_are_refused(line):
    with pytest.raises(plain.NotPlain):
        message = plain.loads(line)
        if type(message) is not dict:
            raise plain.NotPlain("not a message")


@pytest.mark.parametrize("data", [{"tuple": 1}, {"set": [[1]]}, {"dict": [[1]]}, {"weird": []}, {"a": 1, "b": 2},
                                  {"bytes": "zz"}, {"float": "1e400x"}, {"dict": [[[1], 2]]}])
def test_malformed_tags_are_refused(data):
    with pytest.raises(plain.NotPlain):
        plain.from_tagged(data)


# Layers -----------------------------------------------------------------------------------------------------------

def test_every_property_is_enforced_on_this_host():
    host = require()
    assert host.missing() == []
    layers = run_program("pass", FAST).layers
    assert any(x.startswith("seccomp") for x in layers) and "rlimits" in layers
    assert ("an unused uid, no groups" in layers) == host.as_root
    assert any("own filesystem root" in x for x in layers) == host.namespaces
    assert any(x.startswith("landlock abi") for x in layers) == (abi_version() >= 1)


def test_what_the_program_sees_of_the_machine():
    host = require()
    if not host.namespaces:
        pytest.skip("the view from inside the sandbox's own root (this host gives Landlock only)")
    # Not root: a user namespace whose root maps to the caller (its groups cannot be dropped there).
    uid = "os.getuid() >= 1_600_000_000 and os.getgroups() == []" if host.as_root else "os.getuid() == 0"
    probe = ("import os, sys\n"
             f"assert {uid}, 'uid'\n"
             "assert 'HOME' not in os.environ and 'BENCH_SANDBOX_NONCE' not in os.environ, 'env'\n"
             "assert not os.path.exists('/proc/self') and not os.path.exists('/etc/passwd'), 'proc, etc'\n"
             "assert not any(os.path.exists(p) for p in ('/root/.config', '/root/.ssh', '/home')), 'home'\n"
             # /tmp is empty but for the way to an interpreter or packages that live under the host's /tmp
             "under = {p.split('/')[2] for p in (sys.prefix, sys.base_prefix, *sys.path) if p.startswith('/tmp/')}\n"
             "assert os.getcwd() == '/tmp' and set(os.listdir('/tmp')) <= under, 'cwd'\n"
             "import json, numpy, sqlite3\n")  # the standard library and installed packages import
    outcome = run_program(probe, FAST)
    assert outcome.passed, outcome


def test_landlock_alone_still_confines_reads_writes_and_cleanup(tmp_path):
    """The fallback where namespaces are refused (a container without CAP_SYS_ADMIN): Landlock binds even root.

    (Without the uid switch: here the interpreter lives under /root, mode 0700, which another uid cannot read.)"""
    host, _ = confinement()
    if abi_version() < 1:
        pytest.skip("needs Landlock")
    landlock_only = dataclasses.replace(host, namespaces=False, as_root=False)
    assert landlock_only.missing() == ["own uid", "cleanup"]
    (tmp_path / "secret").write_text("x")
    for program in (f"open({str(tmp_path / 'secret')!r}).read()", "open('/etc/hostname').read()",
                    f"open({str(tmp_path / 'new')!r}, 'w')", "open('/tmp/new', 'w')"):
        assert run_program(program, FAST, host=landlock_only).status == "failed", program
    assert run_program("import json", FAST, host=landlock_only).passed
    assert not list(tmp_path.glob("new"))


def test_kill_by_uid_reaps_a_daemon_that_left_the_process_group():
    """What cleans up without a pid namespace: every process of the sandbox's uid, new sessions included."""
    host, _ = confinement()
    if not host.as_root:
        pytest.skip("needs root (a uid of the sandbox's own)")
    bare = dataclasses.replace(host, namespaces=False, landlock_abi=0)
    from bench.scoring.sandbox import Sandbox

    with Sandbox(bare, {"mode": "run", "program": "import time\ntime.sleep(60)", "entry_point": None,
                        "guard": False}, Limits(processes=4)) as box:
        uid = box.uid
        import time

        deadline = time.monotonic() + 10
        while not processes_of(uid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert processes_of(uid)
    assert processes_of(uid) == []


def test_refusal_is_one_line_naming_what_is_missing(monkeypatch):
    host, _ = confinement()
    bare = dataclasses.replace(host, namespaces=False, as_root=False, landlock_abi=0, seccomp=False,
                               no_namespaces_because="unshare: unshare failed: Operation not permitted")
    monkeypatch.setattr(execution, "confinement", lambda: (bare, ""))
    with pytest.raises(SandboxError) as caught:
        require()
    message = str(caught.value)
    assert "\n" not in message and "--unsafe-no-sandbox" in message
    for missing in ("own uid", "read limits", "write limits", "network isolation", "cleanup", "Operation not permitted"):
        assert missing in message
    monkeypatch.setattr(execution, "_unconfined_allowed", True)
    assert require() is bare


def test_a_host_without_unshare_is_probed_as_such():
    """The real probe in a process whose PATH has no unshare: namespaces are missing, and it says why."""
    code = ("from bench.scoring.sandbox import probe\n"
            "host = probe()\nprint(host.namespaces, host.no_namespaces_because)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PATH": "/nonexistent"}, timeout=60)
    assert done.stdout.strip() == "False no unshare command (util-linux)", done.stderr
