"""One JSON message a line over a pair of pipes, with a deadline and a size cap on every read.

Both ends of the candidate's pipes use it: the trusted side must never block on, or be flooded by, a hostile peer,
so `receive` waits with select() until an absolute monotonic deadline and refuses lines longer than ``max_line``.
"""

from __future__ import annotations

import builtins
import os
import select
import time

if __package__:  # imported by the toolkit as bench.scoring.child.channel
    from . import plain
else:  # a child process, which loads this folder by path
    import plain

MAX_LINE = 8 * 1024 * 1024


class ChannelError(Exception):
    """The peer closed the channel, did not answer in time, or sent something that is not a message."""

    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind  # "closed", "timeout", "too long", "not a message"


class Channel:
    def __init__(self, read_fd: int, write_fd: int, max_line: int = MAX_LINE):
        self.read_fd, self.write_fd, self.max_line = read_fd, write_fd, max_line
        self._buffer = b""

    def send(self, message: dict, deadline: float | None = None) -> None:
        data = memoryview(plain.dumps(message))
        while data:
            if deadline is not None and not select.select([], [self.write_fd], [], _left(deadline))[1]:
                raise ChannelError("timeout")
            try:
                data = data[os.write(self.write_fd, data):]
            except (BrokenPipeError, OSError):
                raise ChannelError("closed") from None

    def receive(self, deadline: float | None) -> dict:
        """The next message; waits until the monotonic ``deadline`` (None: as long as it takes)."""
        while b"\n" not in self._buffer:
            if len(self._buffer) > self.max_line:
                raise ChannelError("too long")
            if not select.select([self.read_fd], [], [], _left(deadline))[0]:
                raise ChannelError("timeout")
            chunk = os.read(self.read_fd, 65536)
            if not chunk:
                raise ChannelError("closed")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        if len(line) > self.max_line:
            raise ChannelError("too long")
        try:
            message = plain.loads(line)
        except plain.NotPlain:
            raise ChannelError("not a message") from None
        if type(message) is not dict:
            raise ChannelError("not a message")
        return message


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


MAX_LINE_NUMBER = 1_000_000


def first_message(chan: Channel, startup_s: float) -> list[str]:
    """The sandbox's layers, from its first message (written before any of the program ran, so it is trusted).

    Raises ChannelError("did not start") or, when the sandbox said why, ChannelError with that reason.
    """
    try:
        message = chan.receive(time.monotonic() + startup_s)
    except ChannelError as exc:
        raise ChannelError(f"the sandbox did not start ({exc.kind})") from None
    layers = message.get("started")
    if type(layers) is list and all(type(x) is str for x in layers):
        return layers
    error = message.get("error")
    raise ChannelError(error if type(error) is str else "the sandbox did not start")


def builtin_exception(name: object) -> type | None:
    """The builtin exception class a candidate named, or None: the names of its own classes are its own text."""
    cls = getattr(builtins, name, None) if type(name) is str else None
    return cls if isinstance(cls, type) and issubclass(cls, BaseException) else None


def raised_words(message: dict) -> str:
    """``ValueError at line 3`` from a candidate's ``{"raised", "line"}``: builtin names and numbers only."""
    cls = builtin_exception(message.get("raised"))
    line = message.get("line")
    where = f" at line {line}" if type(line) is int and 0 < line < MAX_LINE_NUMBER else ""
    return (cls.__name__ if cls else "an exception of its own class") + where


def line_in(exc: BaseException, filename: str) -> int | None:
    """The line of ``filename`` where ``exc`` was raised (the last such frame, or the SyntaxError's line)."""
    if isinstance(exc, SyntaxError) and exc.filename == filename:
        return exc.lineno
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
