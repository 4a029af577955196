"""The one timed generate every backend shares: it stamps, bounds and builds the ``Completion``.

A backend only yields chunks: text pieces (``str``) as they arrive, then one ``Accounting`` (its own counters);
a backend that reads from a socket may put an ``Arrival`` before the pieces of each read: when that read's last
byte reached the host, which is earlier than the piece is handled when reads gather (``bench.backends.http_body``).
This module owns what the energy windows rely on, so it is the same for every backend:

- ``t_send_ns`` right before the stream is opened, ``t_first_token_ns`` at the first non-empty piece,
  ``t_last_token_ns`` at the last chunk (host ``CLOCK_MONOTONIC``): the latest ``Arrival`` when the backend gives
  them, else when the piece is handled and right after the stream ends;
- the deadline: checked after every piece, and passed to the backend, which bounds its own waits by it and raises
  ``DeadlinePassed`` when a wait hits it; either way the answer is ``AnswerTimeout`` carrying the partial text;
- a stream that ends without an ``Accounting`` (Ollama's repeat guard ends a looping answer that way) is kept as an
  incomplete ``Completion`` (``complete=False``, no backend timings), not dropped.

This loop is the runner's hot path while an answer streams, so it does the least per chunk: a type check or two,
one clock read, a list append.
"""

from __future__ import annotations

import time
import dataclasses
from typing import Callable, Iterator, Union

from bench.backends.base import AnswerTimeout
from bench.records import Accounting, Completion


class Arrival(int):
    """Host ``CLOCK_MONOTONIC`` ns by which the pieces that follow (up to the next ``Arrival``) had arrived."""

    __slots__ = ()


Chunk = Union[str, Accounting, Arrival]


class DeadlinePassed(Exception):
    """Raised by a backend's stream when a wait (socket read, sampler) ran into the answer's deadline."""


def timed_generate(tag: str, timeout_s: float, deadline_ns: int,
                   open_stream: Callable[[int], Iterator[Chunk]]) -> Completion:
    """Run one answer: ``open_stream(deadline_ns)`` yields its chunks; raises ``AnswerTimeout`` (with the partial
    answer) at the deadline, and lets a backend's own ``AnswerFailed``/``BackendError`` through."""
    monotonic_ns = time.monotonic_ns
    pieces: list[str] = []
    t_first: int | None = None
    arrived: int | None = None
    done: Accounting | None = None
    t_send = monotonic_ns()
    stream = open_stream(deadline_ns)
    why = ""
    try:
        for chunk in stream:
            kind = chunk.__class__
            if kind is str:
                if chunk:
                    if t_first is None:
                        t_first = monotonic_ns() if arrived is None else int(arrived)
                    pieces.append(chunk)
                if monotonic_ns() >= deadline_ns:
                    why = "deadline passed mid-stream"
                    break
            elif kind is Arrival:
                arrived = chunk
            else:
                done = chunk
    except DeadlinePassed:
        why = "stalled" if t_first is not None else "no reply"
    finally:
        stream.close()
    t_last = monotonic_ns() if arrived is None or why else int(arrived)
    if why:
        partial = Completion(text="".join(pieces), t_send_ns=t_send, t_first_token_ns=t_first, t_last_token_ns=t_last,
                             complete=False)
        raise AnswerTimeout(f"{tag}: no complete answer within {timeout_s:g} s ({why}; {len(pieces)} pieces so far)",
                            partial=partial)
    if done is None:
        return Completion(text="".join(pieces), t_send_ns=t_send, t_first_token_ns=t_first, t_last_token_ns=t_last,
                          complete=False)
    return Completion(text="".join(pieces), t_send_ns=t_send, t_first_token_ns=t_first, t_last_token_ns=t_last,
                      **{f.name: getattr(done, f.name) for f in dataclasses.fields(Accounting)})


def completion_facts(c: Completion) -> dict:
    """A warm-up's timings as plain facts (kept out of the results, recorded with the model)."""
    return {
        "text_chars": len(c.text),
        "host_total_s": (c.t_last_token_ns - c.t_send_ns) / 1e9,
        "ttft_s": (c.t_first_token_ns - c.t_send_ns) / 1e9 if c.t_first_token_ns is not None else None,
        "prompt_eval_count": c.prompt_eval_count,
        "eval_count": c.eval_count,
        "load_duration_ns": c.load_duration_ns,
        "prompt_eval_duration_ns": c.prompt_eval_duration_ns,
        "eval_duration_ns": c.eval_duration_ns,
        "total_duration_ns": c.total_duration_ns,
        "done_reason": c.done_reason,
        "complete": c.complete,
    }


__all__ = ["Chunk", "DeadlinePassed", "completion_facts", "timed_generate"]
