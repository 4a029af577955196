"""Running HumanEval programs: the paper's way (the whole program, "ran without an exception") and the strict way
(the tests in a trusted judge process, the candidate in the sandbox, plain data between them).

Neither verdict can come from the candidate's process: in strict mode it is the judge's (`child/judge.py`), which
runs the dataset's own test code with only plain data from the candidate; in paper mode "ran to the end" is all the
authors' harness asked, so a program that claims it by writing the message itself gains nothing over one that
simply ends. Reasons are made of fixed words, builtin exception names and numbers, never the program's output.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache

from bench.errors import SandboxError
from bench.scoring.child.channel import Channel, ChannelError, first_message, raised_words
from bench.scoring.sandbox import CHILD, ENV, Confinement, Limits, Sandbox, probe

log = logging.getLogger(__name__)

HOW_TO = "see docs/scoring.md (The sandbox), or pass --unsafe-no-sandbox"


@dataclass(frozen=True)
class Outcome:
    """How one program ended. ``status``: passed, failed, timeout, error (the sandbox or harness failed)."""

    status: str
    reason: str
    duration_s: float
    layers: tuple[str, ...] = ()
    evidence: dict = field(default_factory=dict)
    missing: tuple[str, ...] = ()  # properties not enforced (only ever non-empty under --unsafe-no-sandbox)

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def run_program(source: str, limits: Limits = Limits(), *, guard: bool = False,
                host: Confinement | None = None) -> Outcome:
    """Execute ``source`` as one program; passed iff it ran to the end without an exception.

    ``guard`` applies HF code_eval's reliability guard (the authors' harness); ``host`` skips `require()` (the
    probe itself uses it).
    """
    host = host or require()
    start = time.monotonic()
    config = {"mode": "run", "program": _text(source), "entry_point": None, "guard": guard,
              "preload": code_eval_modules() if guard else []}
    with Sandbox(host, config, limits) as box:
        chan = Channel(box.reply_fd, box.request_fd)
        try:
            layers = tuple(first_message(chan, limits.startup_s))
        except ChannelError as exc:
            log.warning("sandbox did not start: %s %s", exc.kind, box.startup_errors())
            return Outcome("error", exc.kind, time.monotonic() - start)
        try:
            message = chan.receive(time.monotonic() + limits.timeout_s)
        except ChannelError as exc:
            status = "timeout" if exc.kind == "timeout" else "failed"
            reason = f"time limit {limits.timeout_s:g} s exceeded" if exc.kind == "timeout" else \
                f"the program's process ended ({exc.kind})" if exc.kind == "closed" else f"the program sent {exc.kind}"
            return Outcome(status, reason, time.monotonic() - start, layers, missing=tuple(host.missing()))
    took = time.monotonic() - start
    if message.get("done") is True:
        return Outcome("passed", "ran to the end without an exception", took, layers, missing=tuple(host.missing()))
    return Outcome("failed", f"raised {raised_words(message)}", took, layers, missing=tuple(host.missing()))


def run_check(program: str, prompt: str, test: str, entry_point: str, limits: Limits = Limits()) -> Outcome:
    """Strict pass@1: ``program`` (prompt + completion) defined in the sandbox, ``check(entry_point)`` in the judge."""
    host = require()
    task = {"prompt": prompt, "test": test, "entry_point": entry_point, "timeout_s": limits.timeout_s,
            "startup_s": limits.startup_s}
    start = time.monotonic()
    with Sandbox(host, {"mode": "serve", "program": _text(program), "entry_point": entry_point, "guard": False},
                 limits) as box:
        request_fd, reply_fd = box.hand_over()
        try:
            judge = subprocess.Popen([sys.executable, "-I", "-S", "-B", str(CHILD / "judge.py"), str(request_fd),
                                      str(reply_fd)], env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, pass_fds=(request_fd, reply_fd))
        finally:
            os.close(request_fd)
            os.close(reply_fd)
        try:
            out, err = judge.communicate(json.dumps(task).encode(), timeout=limits.startup_s + limits.timeout_s + 10)
        except subprocess.TimeoutExpired:
            judge.kill()
            judge.communicate()
            return Outcome("error", "the judge did not finish", time.monotonic() - start)
        if judge.returncode != 0:
            log.warning("judge failed (exit %s): %s", judge.returncode, err.decode(errors="replace")[-2000:])
            return Outcome("error", f"the judge failed (exit status {judge.returncode})", time.monotonic() - start)
    verdict = json.loads(out)
    if verdict["status"] == "error":
        log.warning("sandbox error: %s", verdict["reason"])
    return Outcome(verdict["status"], verdict["reason"], time.monotonic() - start, tuple(verdict["layers"]),
                   verdict.get("evidence", {}), tuple(host.missing()))


@lru_cache(maxsize=1)
def code_eval_modules() -> tuple[str, ...]:
    """The top-level modules loaded in the process code_eval forks its programs from: those of ``import evaluate``
    (the authors' script imported it before scoring), found once by importing it in a fresh interpreter."""
    probe_code = ("import json, sys\nbefore = set(sys.modules)\nimport evaluate\n"
                  "print(json.dumps(sorted({m.split('.')[0] for m in set(sys.modules) - before})))")
    try:
        done = subprocess.run([sys.executable, "-I", "-c", probe_code], capture_output=True, text=True, timeout=120,
                              env=ENV)
        if done.returncode == 0:
            return tuple(json.loads(done.stdout))
        log.warning("cannot import evaluate (%s): paper-mode programs import their packages under the guard",
                    done.stderr.strip().splitlines()[-1:] or "exit %d" % done.returncode)
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        log.warning("cannot list the modules code_eval preloads (%s)", exc)
    return ()


def _text(source: str) -> str:
    """Lone surrogates (from bad bytes in an answer) replaced, so the program is valid UTF-8."""
    return source.encode("utf-8", errors="replace").decode("utf-8")


_unconfined_allowed = False


def allow_unconfined(allowed: bool = True) -> None:
    """``--unsafe-no-sandbox``: run with whatever layers this host has; scores record what was missing."""
    global _unconfined_allowed
    _unconfined_allowed = allowed


@lru_cache(maxsize=1)
def confinement() -> tuple[Confinement, str]:
    """This host's confinement and, if running a trivial program through it failed, why (once per process)."""
    host = probe()
    # Imports a few modules the harness has not loaded: the standard library must be readable from inside.
    trial = run_program("import decimal, typing, unittest", Limits(timeout_s=10.0), guard=True, host=host)
    return host, "" if trial.passed else f"a trial program failed ({trial.reason})"


def require() -> Confinement:
    """This host's confinement; SandboxError (one line) if a property is missing and that was not allowed."""
    host, broken = confinement()
    if _unconfined_allowed:
        return host
    if broken:
        raise SandboxError(f"cannot run HumanEval answers in the sandbox here: {broken}; {HOW_TO}")
    missing = host.missing()
    if missing:
        why = f" ({host.no_namespaces_because})" if host.no_namespaces_because else ""
        raise SandboxError(f"cannot confine HumanEval answers here: missing {', '.join(missing)}{why}; {HOW_TO}")
    return host
