"""Typed errors. The library raises these; only the CLI turns them into a one-line message and an exit code."""


class BenchError(Exception):
    """Base of every error the toolkit raises on purpose; its message is one line that names the problem."""

    exit_code = 1


class SpecError(BenchError):
    """The experiment spec is malformed: message is ``file: key: expected ..., got ...``."""


class CatalogError(BenchError):
    """An unknown model, dataset or driver name (the message lists near matches and the choices)."""


class DatasetError(BenchError):
    """A dataset file is missing, corrupt, or differs from the pinned selection."""


class BackendError(BenchError):
    """The inference backend failed in a way that is not a per-answer fault (server down, model missing)."""


class DigestMismatch(BackendError):
    """A pulled model's digest differs from the catalog's."""


class ResultsError(BenchError):
    """The results store refuses an operation (wrong run in a folder, newer schema, ...)."""


class MeterError(BenchError):
    """The meter daemon or its client failed."""


class ProvenanceError(BenchError):
    """A signature, checksum or manifest check failed."""


def did_you_mean(kind: str, name: str, choices: list[str]) -> str:
    """``Unknown model 'x'. Did you mean 'y'? Available: ...`` as one line."""
    import difflib

    near = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
    return f"unknown {kind} {name!r}.{hint} Available: {', '.join(sorted(choices))}"


class FleetError(BenchError):
    """A fleet plan, inventory, shard folder or merge is refused; the message names the file and the reason."""


class SandboxError(BenchError):
    """Untrusted code cannot be confined on this host (the message lists what is missing and how to get it)."""
