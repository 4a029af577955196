"""Experiment spec: load a TOML file, check every key strictly, fill defaults, and hash the result.

The spec only selects and parameterises; prompt formats, extractors and scorers are code. Every error is one line:
``<file>: <key>: expected ..., got ...``. The canonical hash (sha256 of the normalised spec as canonical JSON)
travels with every run, so two runs with the same hash asked the same questions in the same way.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from bench.backends import KINDS as BACKEND_KINDS
from bench.backends.goduration import DurationError, keep_alive_ns
from bench.catalog import ModelEntry, model, paper_models
from bench.datasets import KINDS as SOURCE_KINDS, SELECTIONS
from bench.errors import BenchError, SpecError, did_you_mean
from bench.records import canonical_json, sha256_text
from bench.scoring import MODES as SCORING_MODES
from bench.suite import DATASETS

ORDERS = ("dataset-major", "model-major")
SHARD_ROLES = ("work", "calibration")
# The line `bench fleet plan` puts between a parent spec's text and the [shard] table it appends.
SHARD_MARKER = "# --- fleet shard: written by `bench fleet plan`; the [shard] table is part of the spec hash ---"
# Generation options a spec may set; they are passed to the backend as given (Ollama names).
OPTION_KEYS = ("temperature", "num_ctx", "num_predict", "seed", "num_thread", "top_k", "top_p", "repeat_penalty")
INTEGER_OPTIONS = ("num_ctx", "num_predict", "seed", "num_thread", "top_k")


@dataclass(frozen=True)
class BackendSpec:
    kind: str
    host: str | None
    timeout_s: float
    warmup: bool
    keep_alive: str | int | float | None  # as Ollama takes it: a Go duration string, or seconds
    allow_digest_override: bool


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    source: str
    selection: str
    limit: int | None
    path: str | None
    revision: str | None


@dataclass(frozen=True)
class MeterSpec:
    """``driver``: the runner starts a local daemon with it; else the running daemon at ``socket`` (a path or
    ``tls://HOST:PORT``; None: $BENCH_METER_SOCKET, else the default). ``clock_tolerance_ms``: a window converted
    from a remote meter's clock with a larger error bound is flagged."""

    driver: str | None
    socket: str | None
    options: dict[str, Any]
    clock_tolerance_ms: float = 1.0


@dataclass(frozen=True)
class IdleSpec:
    duration_s: float
    fixed_w: float | None


@dataclass(frozen=True)
class CooldownSpec:
    max_temp_c: float
    max_wait_s: float


@dataclass(frozen=True)
class ShardSpec:
    """This spec is one shard of a fleet plan: the (model, dataset) blocks one host runs, in order.

    Part of the spec hash, so a shard can be confused neither with another shard nor with its parent; the parent's
    hash is recorded too, so a merge can tell which shards belong to one experiment. ``moved_from`` names the shard
    whose blocks these were (a dead host's remainder moved explicitly): its answers in these blocks are superseded.
    A ``calibration`` shard runs the fleet's common calibration spec whole, on every host.
    """

    plan: str
    name: str
    host: str
    role: str
    parent_sha256: str
    blocks: tuple[tuple[str, str], ...]
    moved_from: str | None = None


@dataclass(frozen=True)
class Spec:
    name: str
    description: str
    backend: BackendSpec
    options: dict[str, Any]
    models: tuple[str, ...]
    datasets: tuple[DatasetSpec, ...]
    meter: MeterSpec
    idle: IdleSpec
    cooldown: CooldownSpec
    scoring_modes: tuple[str, ...]
    order: str
    source_path: str = field(compare=False)
    source_text: str = field(compare=False, repr=False)
    catalog: Mapping[str, ModelEntry] | None = field(default=None, compare=False, repr=False)
    """Where the spec's tags resolve: None = today's catalog; a stored run passes the entries it snapshotted."""
    shard: ShardSpec | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("source_path", "source_text", "catalog"):
            d.pop(key)
        if self.shard is None:  # an unsharded spec hashes as it did before shards existed
            d.pop("shard")
        return d

    @property
    def sha256(self) -> str:
        return sha256_text(canonical_json(self.to_dict()))

    @property
    def parent_sha256(self) -> str:
        """The hash of this spec without its [shard] table (its own hash when it is not a shard)."""
        d = self.to_dict()
        d.pop("shard", None)
        return sha256_text(canonical_json(d))

    def blocks(self) -> tuple[tuple[str, str], ...]:
        """(model, dataset) blocks in run order: the shard's, or every pair in the spec's order."""
        if self.shard is not None:
            return self.shard.blocks
        if self.order == "dataset-major":
            return tuple((m, d.name) for d in self.datasets for m in self.models)
        return tuple((m, d.name) for m in self.models for d in self.datasets)

    def model_entries(self) -> list[ModelEntry]:
        return [self.catalog[tag] if self.catalog is not None else model(tag) for tag in self.models]


def shipped_specs() -> list[str]:
    folder = resources.files("bench.catalog").joinpath("specs")
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def resolve(name_or_path: str) -> tuple[str, str]:
    """A shipped spec name (``demo``) or a path to a TOML file -> (label for messages, text)."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or os.sep in name_or_path:
        try:
            return str(path), path.read_text("utf-8")
        except OSError as exc:
            raise SpecError(f"{path}: cannot read spec: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise SpecError(f"{path}: not UTF-8 text (byte {exc.start}); a spec is a UTF-8 TOML file") from None
    if name_or_path not in shipped_specs():
        raise SpecError(did_you_mean("spec", name_or_path, shipped_specs()) + " (or give a path to a .toml file)")
    text = resources.files("bench.catalog").joinpath("specs", f"{name_or_path}.toml").read_text("utf-8")
    return f"{name_or_path}.toml", text


def load_spec(name_or_path: str) -> Spec:
    label, text = resolve(name_or_path)
    return parse_spec(text, label)


class _Table:
    """A TOML table read strictly: every key read is tracked, and leftovers are reported as unknown."""

    def __init__(self, label: str, prefix: str, raw: Any):
        self.label, self.prefix = label, prefix
        if not isinstance(raw, dict):
            self.fail("", "a table", raw)
        self.raw = raw
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, expected: str, got: Any) -> None:
        where = self.key(name) if name else (self.prefix or "<top level>")
        raise SpecError(f"{self.label}: {where}: expected {expected}, got {got!r}")

    def get(self, name: str, types: type | tuple[type, ...], default: Any = ..., expected: str = "") -> Any:
        self.seen.add(name)
        if name not in self.raw:
            if default is ...:
                raise SpecError(f"{self.label}: {self.key(name)}: missing (expected {expected or _names(types)})")
            return default
        value = self.raw[name]
        if isinstance(value, bool) and bool not in _tuple(types):
            self.fail(name, expected or _names(types), value)
        if not isinstance(value, types):
            self.fail(name, expected or _names(types), value)
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: Any = ...) -> Any:
        value = self.get(name, str, default, expected="one of " + ", ".join(choices))
        if value is not None and value not in choices:
            self.fail(name, "one of " + ", ".join(choices), value)
        return value

    def number(self, name: str, default: Any = ..., *, minimum: float = 0.0, integer: bool = False) -> Any:
        types = (int,) if integer else (int, float)
        value = self.get(name, types, default, expected=f"{'an integer' if integer else 'a number'} >= {minimum}")
        if value is not None and value is not default and value < minimum:
            self.fail(name, f"{'an integer' if integer else 'a number'} >= {minimum}", value)
        return value

    def table(self, name: str, default: Any = ...) -> "_Table":
        raw = self.get(name, dict, {} if default is ... else default, expected="a table")
        return _Table(self.label, self.key(name), raw)

    def done(self) -> None:
        unknown = sorted(set(self.raw) - self.seen)
        if unknown:
            raise SpecError(f"{self.label}: {self.key(unknown[0])}: unknown key (allowed here: "
                            f"{', '.join(sorted(self.seen))})")


def _tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _names(types: type | tuple[type, ...]) -> str:
    names = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
             "dict": "a table", "list": "a list"}
    return " or ".join(names.get(t.__name__, t.__name__) for t in _tuple(types))


def parse_spec(text: str, label: str = "<spec>", catalog: Mapping[str, ModelEntry] | None = None) -> Spec:
    """Parse and check a spec; model tags resolve in ``catalog`` (a stored run's snapshot) or today's catalog."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{label}: not valid TOML: {exc}") from None
    top = _Table(label, "", raw)

    exp = top.table("experiment", default=None)
    name = exp.get("name", str)
    description = exp.get("description", str, "")
    order = exp.choice("order", ORDERS, "dataset-major")
    exp.done()

    be = top.table("backend")
    kind = be.choice("kind", tuple(BACKEND_KINDS))
    backend = BackendSpec(
        kind=kind,
        host=be.get("host", str, None),
        timeout_s=float(be.number("timeout_s", 1200.0, minimum=0.001)),
        warmup=be.get("warmup", bool, True),
        keep_alive=_keep_alive(be),
        allow_digest_override=be.get("allow_digest_override", bool, False),
    )
    be.done()

    opt = top.table("options")
    options: dict[str, Any] = {}
    for key in list(opt.raw):
        if key not in OPTION_KEYS:
            raise SpecError(f"{label}: options.{key}: unknown generation option (allowed: {', '.join(OPTION_KEYS)})")
        integer = key in INTEGER_OPTIONS
        value = opt.number(key, minimum=0.0, integer=integer)
        options[key] = int(value) if integer else float(value)  # 0 and 0.0 must hash alike
    options.setdefault("temperature", 0.0)  # the paper's only option

    mt = top.table("models")
    tags_raw = mt.get("tags", list, None)
    preset = mt.choice("set", ("paper",), None)
    mt.done()
    if (tags_raw is None) == (preset is None):
        raise SpecError(f"{label}: models: expected exactly one of models.tags (a list of catalog tags) or "
                        f"models.set = \"paper\"")
    entries = list(catalog.values()) if catalog is not None else paper_models()
    tags = [m.tag for m in entries if m.in_paper] if preset else list(tags_raw)
    if not tags:
        raise SpecError(f"{label}: models.tags: expected at least one model, got []")
    for tag in tags:
        if not isinstance(tag, str):
            raise SpecError(f"{label}: models.tags: expected catalog tags (strings), got {tag!r}")
        entry = model_or_spec_error(label, tag, catalog)
        if entry.backend != kind:
            raise SpecError(f"{label}: models.tags: {tag!r} runs on the {entry.backend!r} backend, "
                            f"but backend.kind is {kind!r}")
    if len(set(tags)) != len(tags):
        raise SpecError(f"{label}: models.tags: expected each model once, got duplicates in {tags!r}")

    ds_table = top.table("datasets")
    datasets = []
    for ds_name in list(ds_table.raw):
        if ds_name not in DATASETS:
            raise SpecError(f"{label}: datasets.{ds_name}: " + did_you_mean("dataset", ds_name, list(DATASETS)))
        t = ds_table.table(ds_name)
        source = t.choice("source", SOURCE_KINDS)
        path = t.get("path", str, None)
        if source == "files" and path is None:
            raise SpecError(f"{label}: datasets.{ds_name}.path: missing (expected a directory, since source = \"files\")")
        datasets.append(DatasetSpec(
            name=ds_name, source=source, selection=t.choice("selection", SELECTIONS, "paper"),
            limit=t.number("limit", None, minimum=1, integer=True), path=path,
            revision=t.get("revision", str, None)))
        t.done()
    ds_table.done()
    if not datasets:
        raise SpecError(f"{label}: datasets: expected at least one dataset table, e.g. [datasets.gsm8k]")

    mtab = top.table("meter")
    meter = MeterSpec(driver=mtab.get("driver", str, None), socket=mtab.get("socket", str, None),
                      options=dict(mtab.get("options", dict, {})),
                      clock_tolerance_ms=float(mtab.number("clock_tolerance_ms", 1.0)))
    mtab.done()
    if meter.driver is not None and meter.socket is not None:
        raise SpecError(f"{label}: meter: expected at most one of meter.driver (start a local daemon) or "
                        f"meter.socket (the running daemon; without either, $BENCH_METER_SOCKET or the default)")
    if meter.socket is not None:
        from bench.meter.address import parse

        try:
            parse(meter.socket)
        except BenchError as exc:
            raise SpecError(f"{label}: meter.socket: {exc}") from None

    it = top.table("idle")
    fixed_w = it.number("fixed_w", None)
    idle = IdleSpec(duration_s=float(it.number("duration_s", 0.0)),
                    fixed_w=None if fixed_w is None else float(fixed_w))
    it.done()
    if idle.duration_s == 0 and idle.fixed_w is None:
        raise SpecError(f"{label}: idle: expected idle.duration_s > 0 (measure) or idle.fixed_w (e.g. the paper's 2.85)")

    ct = top.table("cooldown")
    cooldown = CooldownSpec(max_temp_c=float(ct.number("max_temp_c", 60.0)),
                            max_wait_s=float(ct.number("max_wait_s", 0.0)))
    ct.done()

    st = top.table("scoring")
    modes = st.get("modes", list, ["paper", "strict"])
    for m in modes:
        if m not in SCORING_MODES:
            st.fail("modes", "a list of " + ", ".join(SCORING_MODES), modes)
    st.done()
    shard_raw = top.table("shard") if "shard" in raw else None
    top.done()

    spec = Spec(name=name, description=description, backend=backend, options=options, models=tuple(tags),
                datasets=tuple(datasets), meter=meter, idle=idle, cooldown=cooldown, scoring_modes=tuple(modes),
                order=order, source_path=label, source_text=text, catalog=catalog)
    if shard_raw is None:
        return spec
    return replace(spec, shard=_parse_shard(shard_raw, spec))


def _parse_shard(t: _Table, parent: Spec) -> ShardSpec:
    """The [shard] table, checked against the spec it is written into (its parent)."""
    role = t.choice("role", SHARD_ROLES, "work")
    every = parent.blocks()
    raw_blocks = t.get("blocks", list, None if role == "work" else [list(b) for b in every],
                       expected="a list of [model, dataset] pairs")
    if raw_blocks is None:
        t.fail("blocks", "a list of [model, dataset] pairs", None)
    blocks = []
    for b in raw_blocks:
        if not (isinstance(b, list) and len(b) == 2 and all(isinstance(x, str) for x in b)):
            t.fail("blocks", "[model, dataset] pairs of strings", b)
        if tuple(b) not in every:
            t.fail("blocks", "pairs of this spec's models.tags and datasets", b)
        blocks.append((b[0], b[1]))
    if not blocks or len(set(blocks)) != len(blocks):
        t.fail("blocks", "at least one block, each once", raw_blocks)
    shard = ShardSpec(plan=t.get("plan", str), name=t.get("name", str), host=t.get("host", str), role=role,
                      parent_sha256=t.get("parent_sha256", str), blocks=tuple(blocks),
                      moved_from=t.get("moved_from", str, None))
    t.done()
    if shard.parent_sha256 != parent.sha256:
        t.fail("parent_sha256", f"{parent.sha256} (the hash of the rest of this file; was it edited?)",
               shard.parent_sha256)
    return shard


def with_shard(parent_text: str, shard: ShardSpec) -> str:
    """A parent spec's text with a [shard] table appended: what `bench fleet plan` writes for each shard."""
    import tomli_w

    table = {k: v for k, v in asdict(shard).items() if v is not None}
    table["blocks"] = [list(b) for b in shard.blocks]
    return f"{parent_text.rstrip()}\n\n{SHARD_MARKER}\n{tomli_w.dumps({'shard': table})}"


def parent_text(text: str) -> str:
    """The parent spec's text of a shard spec written by :func:`with_shard` (unchanged if it is not a shard)."""
    head, marker, _ = text.partition(f"\n\n{SHARD_MARKER}\n")
    return head + "\n" if marker else text


def _keep_alive(be: _Table) -> str | int | float | None:
    """Ollama's rules (api/types.go Duration.UnmarshalJSON): a Go duration string or a number of seconds."""
    value = be.get("keep_alive", (str, int, float), None,
                   expected="a Go duration such as \"30m\" or \"-1m\", or a number of seconds")
    if value is None:
        return None
    try:
        keep_alive_ns(value)
    except DurationError as exc:
        be.fail("keep_alive", f"a Go duration such as \"30m\", \"1h\" or \"-1m\" (a unit is required except for "
                f"\"0\"; Ollama answers HTTP 400 with {exc}), or a number of seconds (negative: stay loaded)", value)
    return value


def model_or_spec_error(label: str, tag: str, catalog: Mapping[str, ModelEntry] | None = None) -> ModelEntry:
    from bench.errors import CatalogError

    if catalog is not None:
        if tag not in catalog:
            raise SpecError(f"{label}: models.tags: {did_you_mean('model', tag, list(catalog))}")
        return catalog[tag]
    try:
        return model(tag)
    except CatalogError as exc:
        raise SpecError(f"{label}: models.tags: {exc}") from None
