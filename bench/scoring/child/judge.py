"""The trusted side of a strict HumanEval check: the dataset's test code runs here, with the entry point replaced by
a proxy that calls the candidate in its sandbox over a pipe, arguments and returns as plain data.

    python -I -S -B judge.py REQUEST_FD REPLY_FD  < {"prompt", "test", "entry_point", "timeout_s", "startup_s"}

Prints one JSON verdict: ``status`` (passed, failed, timeout, error), a ``reason`` made only of fixed words,
builtin exception names and numbers (never text the candidate chose), the sandbox's ``layers`` and the evidence:
how many calls were made and which of the test's assertions ran. Only `check()` returning normally, after at least
one call and one assertion, is a pass; the candidate has no way to write this verdict or to reach this process.
"""

import ast
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import channel  # noqa: E402
import plain  # noqa: E402

del sys.path[0]

TEST = "<test>"


class CandidateFailed(BaseException):
    """Not an Exception: a test's ``except Exception`` cannot turn a dead or silent candidate into a pass."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


class _RecordAsserts(ast.NodeTransformer):
    """After every assert of the test, note its line: the evidence of which assertions ran and passed."""

    def __init__(self):
        self.lines: list[int] = []

    def visit_Assert(self, node: ast.Assert):
        self.lines.append(node.lineno)
        note = ast.Expr(ast.Call(ast.Name("__bench_assert_ran__", ast.Load()), [ast.Constant(node.lineno)], []))
        return [node, ast.copy_location(note, node)]


class Proxy:
    """Stands for the entry point in the test: each call is a request to the candidate and a checked reply."""

    def __init__(self, chan: channel.Channel, deadline: float):
        self.chan, self.deadline, self.calls = chan, deadline, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        n = self.calls
        try:
            request = {"call": n, "args": plain.to_tagged(list(args)), "kwargs": plain.to_tagged(kwargs)}
        except plain.NotPlain:
            raise CandidateFailed("error", f"the test passes a value that is not plain data (call {n})") from None
        try:
            self.chan.send(request, self.deadline)
            reply = self.chan.receive(self.deadline)
        except channel.ChannelError as exc:
            raise _channel_failure(exc, f"call {n}") from None
        if reply.get("call") != n:
            raise CandidateFailed("failed", f"the reply to call {n} is out of order")
        if "return" in reply:
            try:
                return plain.from_tagged(reply["return"])
            except plain.NotPlain:
                raise CandidateFailed("failed", f"call {n} returned something that is not plain data") from None
        if "unplain" in reply:
            raise CandidateFailed("failed", f"call {n} returned a value that is not plain data")
        if "raised" in reply:
            raise _candidate_exception(reply, n)
        raise CandidateFailed("failed", f"malformed reply to call {n}")


def _candidate_exception(reply: dict, n: int) -> BaseException:
    """The builtin exception the candidate raised, re-raised here so a test that expects it sees it."""
    cls = channel.builtin_exception(reply.get("raised"))
    if cls is None or not issubclass(cls, Exception):
        return CandidateFailed("failed", f"the candidate raised {channel.raised_words(reply)} (call {n})")
    try:
        exc = cls(f"raised by the candidate (call {n})")
    except TypeError:  # builtins such as UnicodeDecodeError need more arguments
        return CandidateFailed("failed", f"the candidate raised {cls.__name__} (call {n})")
    exc.bench_call = n
    return exc


def _channel_failure(exc: channel.ChannelError, during: str) -> CandidateFailed:
    if exc.kind == "timeout":
        return CandidateFailed("timeout", f"time limit exceeded ({during})")
    if exc.kind == "closed":
        return CandidateFailed("failed", f"the candidate's process ended ({during})")
    return CandidateFailed("failed", f"the candidate sent {exc.kind} ({during})")


def _loaded(chan: channel.Channel, deadline: float) -> None:
    try:
        message = chan.receive(deadline)
    except channel.ChannelError as exc:
        raise _channel_failure(exc, "while the program was defined") from None
    if message.get("loaded") is True:
        return
    if message.get("missing") is True:
        raise CandidateFailed("failed", "the program does not define the entry point")
    raise CandidateFailed("failed", f"the program raised {channel.raised_words(message)} while being defined")


def judge(task: dict, chan: channel.Channel) -> dict:
    verdict: dict = {"layers": []}
    recorder = _RecordAsserts()
    tree = recorder.visit(ast.parse(task["test"], TEST))
    ran: list[int] = []
    namespace = {"__name__": "__bench_judge__", "__bench_assert_ran__": ran.append}
    proxy = None
    try:
        try:
            verdict["layers"] = channel.first_message(chan, task["startup_s"])
        except channel.ChannelError as exc:
            raise CandidateFailed("error", exc.kind) from None
        deadline = time.monotonic() + task["timeout_s"]
        _loaded(chan, deadline)
        proxy = Proxy(chan, deadline)
        exec(compile(task["prompt"], "<prompt>", "exec"), namespace)  # the dataset's helpers (poly, encode_cyclic)
        namespace[task["entry_point"]] = proxy
        exec(compile(ast.fix_missing_locations(tree), TEST, "exec"), namespace)
        namespace["check"](proxy)
    except CandidateFailed as exc:
        verdict.update(status=exc.status, reason=exc.reason)
    except AssertionError as exc:
        call = getattr(exc, "bench_call", None)
        verdict.update(status="failed", reason=f"the candidate raised AssertionError (call {call})" if call else
                       f"assertion at test line {channel.line_in(exc, TEST)} failed (after call {proxy.calls})")
    except Exception as exc:  # noqa: BLE001 - whatever the test raised is a failure of the candidate
        call = getattr(exc, "bench_call", None)
        verdict.update(status="failed", reason=f"the candidate raised {type(exc).__name__} (call {call})" if call
                       else f"the test raised {type(exc).__name__} at test line {channel.line_in(exc, TEST)}")
    else:
        if proxy.calls and ran:
            verdict.update(status="passed", reason=f"check() passed: {len(ran)} assertions over {proxy.calls} calls")
        else:
            verdict.update(status="failed", reason="check() made no call or ran no assertion")
    verdict["evidence"] = {"calls": proxy.calls if proxy else 0, "assertions_ran": len(ran),
                           "assert_lines_ran": sorted(set(ran)), "assert_lines": recorder.lines}
    return verdict


def main() -> None:
    task = json.load(sys.stdin)
    out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # the test's own prints must not corrupt the verdict
        os.dup2(devnull, fd)
    chan = channel.Channel(int(sys.argv[2]), int(sys.argv[1]))
    verdict = judge(task, chan)
    os.close(chan.write_fd)  # the candidate sees the end of its requests and exits
    os.write(out, json.dumps(verdict).encode("utf-8") + b"\n")


main()
