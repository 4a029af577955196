"""The one small protocol every inference backend implements, the per-answer faults it may raise, and the
verdict of a model check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from bench.catalog import ModelEntry
from bench.errors import BenchError
from bench.records import Completion


class AnswerTimeout(BenchError):
    """The answer did not finish within its timeout; the runner records status ``timeout``."""

    def __init__(self, message: str, partial: Completion | None = None):
        super().__init__(message)
        self.partial = partial


class AnswerFailed(BenchError):
    """This one answer failed (a 500, a dropped stream, ...); the runner records status ``error`` with the reason."""


class ModelSkipped(BenchError):
    """The model cannot run on this host (e.g. ``skipped: needs more RAM``); the runner records status ``skipped``.

    The paper left 8 of 36 candidates out because they did not fit the Pi's 4 GB; this makes that a recorded
    decision instead of a crash mid-run.
    """

    def __init__(self, message: str, needed_bytes: int | None = None, available_bytes: int | None = None):
        super().__init__(message)
        self.needed_bytes = needed_bytes
        self.available_bytes = available_bytes


class LoadFailed(ModelSkipped):
    """The server could not load the model (not enough memory, the runner died, the load timed out): retrying does
    not help, so the runner skips the model with this reason and goes on."""


@dataclass(frozen=True)
class ModelCheck:
    """The verdict on one model's local copy: ``status`` is ``ok``, ``missing``, ``mismatch`` or ``override``;
    ``note`` says anything else worth a line (e.g. the registry now serves another digest for the tag)."""

    tag: str
    status: str
    digest: str | None
    catalog_digest: str
    where: str
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "override")


class Backend(Protocol):
    """``prepare`` loads and checks a model (digest, fit) and warms it up; ``generate`` answers one prompt."""

    name: str
    in_process: bool  # inference runs in the runner's own process (its CPU time is the runner's)

    def describe(self) -> dict[str, Any]: ...

    def prepare(self, model: ModelEntry) -> dict[str, Any]: ...

    def generate(self, model: ModelEntry, prompt: str, options: dict[str, Any], timeout_s: float) -> Completion: ...

    def close(self) -> None: ...
