"""The HumanEval sandbox: hostile programs end wrong, within limits, and leave the machine untouched."""

from __future__ import annotations

import glob
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from bench.scoring import score
from bench.scoring.landlock import abi_version
from bench.scoring.sandbox import Limits, run_python

FAST = Limits(timeout_s=1.5, memory_mb=512)


def sandbox_dirs() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "bench-sandbox-*")))


def processes_in_sandboxes() -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if "bench-sandbox-" in os.readlink(proc / "cwd"):
                    found.append(proc.name)
            except OSError:
                pass
    return found


@pytest.fixture(autouse=True)
def machine_untouched():
    before = sandbox_dirs()
    yield
    assert sandbox_dirs() <= before, "sandbox temp dirs left behind"
    assert not processes_in_sandboxes(), "sandbox processes left running"


def test_plain_program_passes_with_protections():
    result = run_python("import math\nassert math.gcd(12, 18) == 6\nopen('scratch.txt', 'w').write('ok')\n", FAST)
    assert result.passed, result
    assert {"tempdir", "rlimits", "python-guard"} <= set(result.protections)
    if abi_version() >= 1:
        assert "landlock" in result.protections


def test_exception_fails_with_its_message():
    result = run_python("def f():\n    raise AssertionError('nope')\nf()\n", FAST)
    assert result.status == "failed" and "AssertionError: nope" in result.reason


def test_endless_loop_is_killed_at_the_time_limit():
    start = time.monotonic()
    result = run_python("while True:\n    pass\n", FAST)
    assert result.status == "timeout" and "time limit" in result.reason
    assert time.monotonic() - start < FAST.timeout_s + 2


def test_sleeping_children_die_with_the_sandbox():
    result = run_python("import time\ntime.sleep(30)\n", FAST)
    assert result.status == "timeout"


def test_memory_hog_fails_fast():
    start = time.monotonic()
    result = run_python("blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 1024 * 1024))\n", FAST)
    assert not result.passed and ("MemoryError" in result.reason or result.status == "killed"), result
    assert time.monotonic() - start < FAST.timeout_s + 2


def test_fork_bomb_cannot_fork():
    result = run_python("import os\nwhile True:\n    os.fork()\n", FAST)
    assert result.status == "failed" and "disabled" in result.reason
    result = run_python("import subprocess\nsubprocess.Popen(['sh', '-c', ':(){ :|:& };:'])\n", FAST)
    assert result.status == "failed" and "subprocess" in result.reason


def test_rm_rf_outside_the_temp_dir_is_refused(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.txt").write_text("keep me")
    for program in (f"import shutil\nshutil.rmtree({str(precious)!r})\n",
                    f"import os\nos.remove({str(precious / 'data.txt')!r})\n",
                    f"open({str(precious / 'data.txt')!r}, 'w').write('gone')\n",
                    f"import os\nos.rename({str(precious)!r}, {str(tmp_path / 'moved')!r})\n"):
        result = run_python(program, FAST)
        assert not result.passed, program
    assert (precious / "data.txt").read_text() == "keep me"


def test_network_calls_fail():
    result = run_python("import urllib.request\nurllib.request.urlopen('http://127.0.0.1:9/')\n", FAST)
    assert result.status == "failed"


def test_network_fails_even_when_the_python_guard_is_bypassed():
    """Load the socket extension behind the guard's back and connect to a live local server: the network
    namespace must still refuse."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    import _socket

    program = (
        "import importlib.machinery, importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('_socket', {_socket.__file__!r})\n"
        "mod = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(mod)\n"
        "s = mod.socket()\n"
        f"s.connect(('127.0.0.1', {port}))\n"
    )
    try:
        result = run_python(program, FAST)
        if "unshare net+pid" not in result.protections:
            pytest.skip("no network namespace on this host; only the Python guard applies")
        assert result.status == "failed" and not accepted, result
    finally:
        server.close()


def test_output_flood_is_capped():
    start = time.monotonic()
    result = run_python("while True:\n    print('x' * 10000)\n", FAST)
    assert not result.passed
    assert len(result.stdout) <= FAST.output_bytes + 100
    assert time.monotonic() - start < FAST.timeout_s + 2


def test_early_exit_cannot_fake_a_pass():
    for program in ("import os\nos._exit(0)\n", "import sys\nsys.exit(0)\n", "raise SystemExit\n"):
        assert not run_python(program, FAST).passed, program


def test_stdin_is_closed():
    result = run_python("input()\n", FAST)
    assert result.status == "failed"


def test_hostile_humaneval_answers_score_wrong_with_a_reason(tmp_path, monkeypatch):
    from bench.datasets import DataSource, load_items
    from bench.scoring import humaneval

    monkeypatch.setattr(humaneval, "LIMITS", FAST)
    it = load_items("humaneval", DataSource("fixtures", "all"))[0]
    sentinel = tmp_path / "sentinel"
    sentinel.write_text("x")
    hostile = {
        "fork bomb": "<ANS>\nimport os\nwhile True:\n    os.fork()\n</ANS>",
        "rm -rf": f"<ANS>\nimport shutil\nshutil.rmtree({str(tmp_path)!r})\n</ANS>",
        "endless loop": "<ANS>\nwhile True:\n    pass\n</ANS>",
        "memory hog": "<ANS>\nx = bytearray(8 * 1024 ** 3)\n</ANS>",
        "network": "<ANS>\nimport urllib.request\nurllib.request.urlopen('http://example.com')\n</ANS>",
    }
    for label, answer in hostile.items():
        for mode in ("paper", "strict"):
            s = score(it, answer, mode)
            assert not s.correct and s.reason, (label, mode)
    assert sentinel.read_text() == "x"
