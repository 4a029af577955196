"""Helpers for energy-window tests: the daemon's window path without its socket, and a store for answers.

``BufferMeter`` answers ``windows`` exactly as the daemon does (``handlers._window_result`` on a ``RingBuffer``, then
the client's reply decoding), so thousands of windows over hours of simulated samples cost milliseconds; the socket
path itself is exercised by the tests that start a real daemon.
"""

from __future__ import annotations

from pathlib import Path

from bench import results
from bench.energy import MeterUncertainty
from bench.meter.buffer import RingBuffer
from bench.meter.client import _reading
from bench.meter.handlers import _window_result
from bench.records import Completion, EnergyReading
from bench.runner import meter_windows


class BufferMeter:
    """The part of ``MeterClient`` that ``runner.meter_windows`` uses, answered from an in-process ring buffer."""

    def __init__(self, buf: RingBuffer) -> None:
        self.buf = buf
        self.requests = 0

    def windows(self, spans_ns, wait_s: float = 2.0, edge_slack_s: float = 0.0) -> list[EnergyReading]:
        self.requests += 1
        return [_reading(_window_result(self.buf, a, b, 0.0, edge_slack_s, tuple(inner)), a, b, None)
                for a, b, *inner in spans_ns]


class AnswerStore:
    """A results DB with one run; ``add`` meters a completion through ``runner.meter_windows`` and records it."""

    def __init__(self, path: Path, unc: MeterUncertainty | None = None) -> None:
        self.path = path
        self.db = results.connect(path)
        self.run, _ = results.open_run(self.db, "energy-test", "0" * 64, "")
        self.unc = unc
        self.n = 0

    def add(self, meter, c: Completion, *, model: str, dataset: str = "gsm8k", idle_w: float = 2.85) -> dict:
        windows = meter_windows(meter, c, self.unc.time_s if self.unc else 0.0)
        self.n += 1
        results.record_answer(self.db, results.AnswerRecord(
            run_id=self.run.run_id, model=model, dataset=dataset, item_id=str(self.n), item_sha256="0" * 64,
            prompt_sha256="1" * 64, status="ok", completion=c, idle_w=idle_w, windows=windows,
            meter_uncertainty=self.unc))
        return windows

    def frame(self):
        self.db.close()
        return results.answers_frame(self.path)
