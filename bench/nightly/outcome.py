"""A night's exit code and its one line: what a cron job sees."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.errors import BenchError

if TYPE_CHECKING:
    from bench.nightly.drift import Judgement
    from bench.nightly.machine import NightConditions

EXIT_OK, EXIT_DRIFT, EXIT_FAILED = 0, 1, 2


class NightFailed(BenchError):
    """Something prevented a valid comparison; the message is the night's one-line reason."""

    exit_code = EXIT_FAILED


@dataclass(frozen=True)
class NightOutcome:
    exit_code: int
    summary: str                   # the one line printed on stdout
    reason: str                    # why: the failure, what drifted, or "within tolerance"
    folder: Path | None = None
    judgements: tuple["Judgement", ...] = ()
    conditions: "NightConditions | None" = None
    recorded: bool = False         # True once the history DB holds this night
