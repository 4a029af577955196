"""The main loop: one answer at a time, each stamped on the host monotonic clock, metered, and committed.

For every answer the runner stamps the moment the request goes out, the first token and the last byte (the backend
does the stamping), asks the meter for the energy of three windows (whole answer, load + prefill, decode), reads
the SoC temperature and throttle state before and after and the CPU other processes used meanwhile, and commits
it all in one transaction before the next request. A resumed run asks only what is missing. SIGINT/SIGTERM
finish the answer in flight and stop cleanly.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import signal
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from bench import conditions, identity, models as model_store, results
from bench.backends import backend_for
from bench.backends.base import AnswerFailed, AnswerTimeout, Backend, ModelSkipped
from bench.catalog import ModelEntry
from bench.datasets import DataSource
from bench.energy import MeterUncertainty
from bench.errors import ResultsError
from bench.meter.address import resolve
from bench.meter.client import MeterClient, MeterUnavailable, connect
from bench.meter.local import spawn_daemon
from bench.records import Completion, EnergyReading, IdleBaseline, Item, sha256_text
from bench.spec import Spec
from bench.suite import load_items, render
from bench.thermal import cool_down, temperature_c, throttled

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    model: ModelEntry
    item: Item
    prompt: str


@dataclass(frozen=True)
class RunOutcome:
    out_dir: Path
    run_id: str
    resumed: bool
    asked: int
    counts: dict[str, int]
    interrupted: bool


class _StopFlag:
    """Set by SIGINT/SIGTERM; the loop checks it between answers so an answer is never half-recorded."""

    def __init__(self) -> None:
        self.stopped = False

    def __call__(self, signum: int, _frame: Any) -> None:
        log.warning("signal %s: finishing the answer in flight, then stopping", signum)
        self.stopped = True


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[_StopFlag]:
    flag = _StopFlag()
    previous = {s: signal.signal(s, flag) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def load_tasks(spec: Spec) -> list[Task]:
    """Every (model, item) of the spec in run order (``Spec.blocks``: the paper ran all models on one dataset before
    the next; a fleet shard runs its own blocks in the order its plan gave)."""
    items_by_ds = {}
    for ds in spec.datasets:
        source = DataSource(kind=ds.source, selection=ds.selection, limit=ds.limit, path=ds.path, revision=ds.revision)
        items_by_ds[ds.name] = [(item, render(item)) for item in load_items(ds.name, source)]
    models = {m.tag: m for m in spec.model_entries()}
    return [Task(models[tag], item, prompt) for tag, ds in spec.blocks() for item, prompt in items_by_ds[ds]]


def items_of(spec: Spec, tasks: list[Task]) -> dict[str, list[Item]]:
    """Each dataset's items in asking order (every model asks the same ones)."""
    out: dict[str, dict[str, Item]] = {ds.name: {} for ds in spec.datasets}
    for t in tasks:
        out[t.item.dataset].setdefault(t.item.item_id, t.item)
    return {name: list(items.values()) for name, items in out.items()}


@contextlib.contextmanager
def open_meter(spec: Spec, out_dir: Path) -> Iterator[MeterClient]:
    """A local daemon started for this run when the spec names a driver (its raw log kept in out/meter), else the
    daemon at the resolved address: the spec's ``meter.socket``, then $BENCH_METER_SOCKET, then the default."""
    if spec.meter.driver is None:
        with connect(resolve(spec.meter.socket)) as client:
            yield client
        return
    log_dir = out_dir / "meter"
    log_dir.mkdir(exist_ok=True)
    with spawn_daemon(spec.meter.driver, spec.meter.options, log_dir=log_dir) as daemon, daemon.connect() as client:
        yield client


IDLE_CHUNK_S = 60  # the idle window is asked a minute at a time: the daemon keeps minutes, not the paper's 104


def measure_idle(meter: MeterClient, duration_s: float, *, sleep=time.sleep) -> IdleBaseline:
    """Mean and sd of idle power: covered energy over covered time, sd over 1-second sub-windows. Asked chunk by
    chunk as the idle period goes, so it works whatever the daemon's query horizon."""
    step = 1_000_000_000
    start = time.monotonic_ns()
    end = start + int(duration_s * 1e9)
    energy_j = covered_s = 0.0
    n_samples = 0
    per_second: list[float] = []
    chunk_start = start
    while chunk_start < end:
        chunk_end = min(chunk_start + IDLE_CHUNK_S * step, end)
        sleep(max((chunk_end - time.monotonic_ns()) / 1e9, 0.0))
        chunk = meter.energy(chunk_start, chunk_end)
        energy_j += chunk.energy_j
        covered_s += chunk.duration_s * chunk.coverage
        n_samples += chunk.n_samples
        seconds = [meter.energy(t, t + step) for t in range(chunk_start, chunk_end - step + 1, step)]
        per_second += [r.mean_w for r in seconds if r.coverage > 0]
        chunk_start = chunk_end
    mean_w = energy_j / covered_s if covered_s > 0 else float("nan")
    sd = statistics.stdev(per_second) if len(per_second) > 1 else 0.0
    log.info("idle baseline: %.3f W (sd %.3f) over %.0f s, %d samples, coverage %.3f",
             mean_w, sd, duration_s, n_samples, covered_s / duration_s if duration_s else 0.0)
    return IdleBaseline(mean_w=mean_w, sd_w=sd, n_samples=n_samples, start_ns=start, end_ns=end, source="measured")


def idle_baseline(spec: Spec, db, run_id: str, meter: MeterClient) -> IdleBaseline:
    """A resumed run keeps its first baseline; a fixed value (the paper's 2.85 W) needs no measuring."""
    existing = results.latest_idle(db)
    if existing is not None:
        return existing
    if spec.idle.duration_s > 0:
        idle = measure_idle(meter, spec.idle.duration_s)
    else:
        now = time.monotonic_ns()
        idle = IdleBaseline(mean_w=float(spec.idle.fixed_w), sd_w=0.0, n_samples=0, start_ns=now, end_ns=now,
                            source="fixed")
    results.record_idle(db, run_id, idle)
    return idle


def meter_windows(meter: MeterClient, c: Completion, edge_slack_s: float = 0.0) -> dict[str, EnergyReading]:
    """The answer's whole, prefill and decode windows, asked in one request (one daemon wake-up per answer);
    ``edge_slack_s`` is the meter's stamp uncertainty, so each edge's error term spans where the edge may be."""
    spans: dict[str, tuple[int, ...]] = {"answer": (c.t_send_ns, c.t_last_token_ns)}
    if c.t_first_token_ns is not None:
        spans["answer"] += (c.t_first_token_ns,)  # power changes there too: inside the answer, not at its edge
        spans["prefill"] = (c.t_send_ns, c.t_first_token_ns)
        spans["decode"] = (c.t_first_token_ns, c.t_last_token_ns)
    return dict(zip(spans, meter.windows(list(spans.values()), edge_slack_s=edge_slack_s)))


def unmetered_windows(c: Completion) -> dict[str, EnergyReading]:
    """The windows of an answer the meter could not be asked about: nothing covered (coverage 0), never padded."""
    spans = {"answer": (c.t_send_ns, c.t_last_token_ns)}
    if c.t_first_token_ns is not None:
        spans.update(prefill=(c.t_send_ns, c.t_first_token_ns), decode=(c.t_first_token_ns, c.t_last_token_ns))
    return {k: EnergyReading(a, b, 0.0, float("nan"), 0, 0.0, reason="meter unreachable") for k, (a, b) in spans.items()}


def record_outages(db, run_id: str, meter: MeterClient, *, ending: bool = False) -> None:
    """One run event per meter outage that ended (and, when the run ends, the one still going)."""
    outages = meter.outages() + ([meter.current_outage] if ending and meter.current_outage else [])
    for o in outages:
        detail = {"last_ok_ns": o.last_ok_ns, "noticed_ns": o.noticed_ns, "restored_ns": o.restored_ns,
                  "reason": o.reason, "attempts": o.attempts, "seconds": round(o.seconds(time.monotonic_ns()), 3)}
        results.add_event(db, run_id, "meter-outage", json.dumps(detail, sort_keys=True))


def _mark_label(task: Task) -> str:
    """``model dataset/item`` in the characters a meter label allows, short enough for the protocol."""
    text = f"{task.model.tag} {task.item.dataset}/{task.item.item_id}"
    return re.sub(r"[^A-Za-z0-9_\-.:/=+@# ]", "_", text)[:100]


INCOMPLETE = ("incomplete: the stream ended without a final (done) chunk, so no backend timings; the text is kept "
              "and scored, as the paper's non-streaming call kept it (Ollama ends a looping answer this way)")


def ask(backend: Backend, meter: MeterClient, spec: Spec, run_id: str, idle_w: float, task: Task,
        keep_trace: bool, unc: MeterUncertainty | None = None) -> results.AnswerRecord:
    """One answer, whatever happens: ok, timeout or error, each with its reason. A model that cannot be loaded
    raises ``ModelSkipped`` (the loop skips the model)."""
    temp_before, thr_before = temperature_c(), throttled()
    status, reason, completion = "ok", "", None
    label = _mark_label(task)
    try:  # answer boundaries in the meter's raw log (and the sim's busy mode); an absent meter loses only marks
        meter.mark(f"answer-begin {label}")
    except MeterUnavailable as exc:
        log.warning("answer-begin mark lost: %s", exc)
    cpu_before = conditions.read_counters()  # what else the machine does meanwhile (two /proc reads, no thread)
    try:
        completion = backend.generate(task.model, task.prompt, dict(spec.options), spec.backend.timeout_s)
        if not completion.complete:
            reason = INCOMPLETE
    except AnswerTimeout as exc:
        status, reason, completion = "timeout", str(exc), exc.partial
    except AnswerFailed as exc:
        status, reason = "error", str(exc)
    except ModelSkipped:  # nothing was answered: close the mark, then the loop skips the model
        with contextlib.suppress(MeterUnavailable):
            meter.mark(f"answer-end {label}")
        raise
    machine = conditions.between(cpu_before, conditions.read_counters())
    unc = unc or MeterUncertainty()
    windows = trace = None
    try:
        meter.mark(f"answer-end {label}", completion.t_last_token_ns if completion else None)
        if completion is not None:
            windows = meter_windows(meter, completion, unc.time_s)
            if keep_trace:
                lead_ns = 1_000_000_000  # a second of the power before the request, to show the step up
                trace = meter.samples(completion.t_send_ns - lead_ns, completion.t_last_token_ns)
    except MeterUnavailable as exc:
        log.warning("no meter for this answer (recorded with coverage 0): %s", exc)
        if completion is not None:
            windows = windows or unmetered_windows(completion)
    return results.AnswerRecord(
        run_id=run_id, model=task.model.tag, dataset=task.item.dataset, item_id=task.item.item_id,
        item_sha256=task.item.sha256, prompt_sha256=sha256_text(task.prompt), status=status, reason=reason,
        completion=completion, idle_w=idle_w, windows=windows, temp_before_c=temp_before,
        temp_after_c=temperature_c(), throttled_before=thr_before, throttled_after=throttled(), trace=trace,
        meter_uncertainty=unc, conditions=machine, clock_tolerance_ns=int(spec.meter.clock_tolerance_ms * 1e6))


def check_models(spec: Spec, tasks: list[Task]) -> None:
    """Every model still to be asked is present with the catalog's digest, checked before the idle baseline
    (which takes the paper 104 minutes), so a missing model stops the run before anything is measured."""
    entries = list({t.model.tag: t.model for t in tasks}.values())
    model_store.refuse_on_mismatch(model_store.check(spec.backend.host, entries, spec.backend.allow_digest_override))


def write_spec_copy(spec: Spec, out_dir: Path) -> None:
    """The spec as run, kept in the result folder (the DB holds the same text and its hash)."""
    path = out_dir / "spec.toml"
    if path.exists() and path.read_text("utf-8") != spec.source_text:
        raise ResultsError(f"{path} differs from the spec being run; this folder belongs to another spec")
    path.write_text(spec.source_text, "utf-8")


def run(spec: Spec, out_dir: Path, *, progress: bool = True, backend: Backend | None = None,
        max_answers: int | None = None) -> RunOutcome:
    """Run (or resume) the spec into ``out_dir``. ``max_answers`` stops early (tests, partial runs)."""
    tasks = load_tasks(spec)  # fails on a bad dataset before anything is written
    results.check_folder_for(out_dir / "results.db", spec.name, spec.sha256)  # and on another spec's folder
    out_dir.mkdir(parents=True, exist_ok=True)
    db = results.connect(out_dir / "results.db")
    try:
        run_row, resumed = results.open_run(db, spec.name, spec.sha256, spec.source_text)
        results.record_identity(db, run_row.run_id, identity.snapshot(spec, items_of(spec, tasks)))
        write_spec_copy(spec, out_dir)
        done = results.done_keys(db, run_row.run_id)
        pending = [t for t in tasks if (t.model.tag, t.item.dataset, t.item.item_id) not in done]
        if max_answers is not None:
            pending = pending[:max_answers]
        log.info("%s run %s: %d of %d answers to ask", "resuming" if resumed else "starting", run_row.run_id,
                 len(pending), len(tasks))
        if not pending:
            return RunOutcome(out_dir, run_row.run_id, resumed, 0, results.status_counts(db), False)
        if backend is None:
            check_models(spec, pending)
            backend = backend_for(spec)
        with open_meter(spec, out_dir) as meter, _stop_on_signals() as stop:
            unc = record_meter(db, run_row.run_id, meter)
            check_horizon(db, run_row.run_id, meter.info(), spec.backend.timeout_s)
            idle = idle_baseline(spec, db, run_row.run_id, meter)
            asked = _loop(spec, db, run_row.run_id, backend, meter, idle.mean_w, unc, pending, stop, progress)
            record_outages(db, run_row.run_id, meter, ending=True)
            results.add_event(db, run_row.run_id, "stop" if stop.stopped else "finished", f"asked {asked}")
        return RunOutcome(out_dir, run_row.run_id, resumed, asked, results.status_counts(db), stop.stopped)
    finally:
        db.close()


def check_horizon(db, run_id: str, info: dict, timeout_s: float) -> None:
    """A daemon that keeps less history than the longest answer can take would cut that answer's windows short:
    say so once, at the start, rather than as unexplained low coverage days later."""
    horizon = info.get("horizon_s")
    if horizon is not None and horizon < timeout_s + 60:
        text = (f"the meter daemon keeps {horizon:.0f} s of samples, less than the answer timeout ({timeout_s:.0f} s) "
                f"plus a minute: longer answers get coverage < 1 (raise its max_buffer_mb or lower its rate)")
        log.warning(text)
        results.add_event(db, run_id, "meter-horizon", text)


def record_meter(db, run_id: str, meter: MeterClient) -> MeterUncertainty:
    """The meter's facts and its declared uncertainty as run events (the manifest copies both); every window of
    this session is bounded with that uncertainty."""
    info = meter.info()
    results.add_event(db, run_id, "meter", json.dumps(info, sort_keys=True, default=str))
    unc = MeterUncertainty.from_info(info)
    results.add_event(db, run_id, "meter_uncertainty", json.dumps(unc.as_dict(), sort_keys=True))
    return unc


COMPLETION_TAIL_S = 30.0
"""How long the run waits at its end for the last answers' completion windows to fill (else stored partial)."""


class CompletionWindows:
    """The paper's window of each answer, ``[last byte, last byte + total_duration]``, lies in the future when the
    answer ends; it is metered once the meter holds samples past its end (after later answers, or at the end)."""

    def __init__(self, db, meter: MeterClient, idle_w: float, unc: MeterUncertainty) -> None:
        self.db, self.meter, self.idle_w, self.unc = db, meter, idle_w, unc
        self.waiting: list[tuple[int, int, int]] = []

    def add(self, answer_id: int, completion: Completion | None) -> None:
        window = results.completion_window(answer_id, completion)
        if window is not None:
            self.waiting.append(window)
        self.settle(time.monotonic_ns())

    def settle(self, now_ns: int) -> None:
        """Meter every waiting window that has ended."""
        self._meter([w for w in self.waiting if w[2] <= now_ns], 0.0)

    def finish(self) -> None:
        """At the end of the run: meter the rest, waiting up to ``COMPLETION_TAIL_S`` for each to end (a window
        ending later is stored with the coverage it has)."""
        self._meter(list(self.waiting), COMPLETION_TAIL_S)

    def _meter(self, due: list[tuple[int, int, int]], tail_s: float) -> None:
        for answer_id, start, end in due:
            remaining = max(0.0, (end - time.monotonic_ns()) / 1e9)
            try:
                (reading,) = self.meter.windows([(start, end)], wait_s=min(remaining, tail_s) + 1.0,
                                                edge_slack_s=self.unc.time_s)
            except MeterUnavailable:  # stored as not covered, like the answer's own windows in an outage
                reading = EnergyReading(start, end, 0.0, float("nan"), 0, 0.0)
            results.record_completion_window(self.db, answer_id, reading, self.idle_w, self.unc)
        self.waiting = [w for w in self.waiting if w not in due]


def _loop(spec: Spec, db, run_id: str, backend: Backend, meter: MeterClient, idle_w: float, unc: MeterUncertainty,
          pending: list[Task], stop: _StopFlag, progress: bool) -> int:
    from tqdm import tqdm

    asked = 0
    completion = CompletionWindows(db, meter, idle_w, unc)
    prepared: str | None = None
    skipped_models: dict[str, str] = {}
    block: tuple[str, str] | None = None
    bar = tqdm(total=len(pending), unit="answer", disable=not progress, dynamic_ncols=True)
    try:
        for task in pending:
            if stop.stopped:
                break
            tag = task.model.tag
            keep_trace = block != (tag, task.item.dataset)  # the first answer of each (model, dataset) block
            block = (tag, task.item.dataset)
            if tag != prepared and tag not in skipped_models:
                prepared = _prepare(spec, db, run_id, backend, task.model, skipped_models)
            bar.set_postfix_str(f"{tag} {task.item.dataset}", refresh=False)
            record = None
            if tag not in skipped_models:
                try:
                    record = ask(backend, meter, spec, run_id, idle_w, task, keep_trace, unc)
                except ModelSkipped as exc:  # the server could not load it at its first answer
                    _skip(db, run_id, tag, str(exc), skipped_models)
            if record is None:
                record = results.AnswerRecord(run_id=run_id, model=tag, dataset=task.item.dataset,
                                              item_id=task.item.item_id, item_sha256=task.item.sha256,
                                              prompt_sha256=sha256_text(task.prompt), status="skipped",
                                              reason=skipped_models[tag])
            answer_id = results.record_answer(db, record)
            record_outages(db, run_id, meter)
            completion.add(answer_id, record.completion)
            asked += 1
            bar.update(1)
        completion.finish()
    finally:
        bar.close()
    return asked


def _prepare(spec: Spec, db, run_id: str, backend: Backend, model: ModelEntry,
             skipped_models: dict[str, str]) -> str | None:
    """Cool down (if the spec asks), then load/check/warm up the model; a model that cannot run is skipped with
    its reason (and the run goes on). Returns the tag when prepared."""
    if spec.cooldown.max_wait_s > 0:
        cool = cool_down(spec.cooldown.max_temp_c, spec.cooldown.max_wait_s)
        results.add_event(db, run_id, "cooldown", f"{model.tag}: {cool}")
    try:
        facts = backend.prepare(model)
    except ModelSkipped as exc:
        _skip(db, run_id, model.tag, str(exc), skipped_models)
        return None
    results.record_model(db, run_id, model.tag, facts)
    return model.tag


def _skip(db, run_id: str, tag: str, reason: str, skipped_models: dict[str, str]) -> None:
    log.warning("%s", reason)
    skipped_models[tag] = reason
    results.add_event(db, run_id, "skip", reason)
