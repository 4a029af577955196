"""Every stage in order on one result folder: run (or resume), score, report, seal. What `make demo` and
`make reproduce` call; each stage can also be run alone from the CLI."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import __version__, results, run_checks
from bench.backends.base import Backend
from bench.energy import describe_sessions
from bench.identity import RunIdentity
from bench.provenance import VerifyReport, verify
from bench.runner import RunOutcome, run
from bench.score_run import ScoreSummary, score_run
from bench.spec import Spec
from bench.suite import dataset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineOutcome:
    run: RunOutcome
    scores: list[ScoreSummary]
    report_dir: Path
    sealed: bool


def run_facts(out_dir: Path) -> dict[str, Any]:
    """What the manifest needs from the results DB: spec, models with digests, idle baseline, meter, counts."""
    db = results.connect_readonly(out_dir / "results.db")
    try:
        run_row = results.get_run(db)
        spec = results.stored_spec(db)
        models = results.model_facts(db)
        meter = results.event_details(db, "meter")
        uncertainty = results.event_details(db, "meter_uncertainty")
        idle = results.latest_idle(db)
        events = results.run_events(db)
        return {
            "run_id": run_row.run_id,
            "identity": results.run_identity(db),
            "spec": {"name": run_row.spec_name, "sha256": run_row.spec_sha256, "toml": run_row.spec_toml},
            "toolkit_version": __version__,
            "results_schema_version": results.schema_version(db),
            "backend": {"kind": spec.backend.kind, "options": spec.options, "models": models},
            "scoring_modes": list(spec.scoring_modes),
            "score_mode": spec.scoring_modes[0],  # the mode the report's numbers are in (verify recomputes them)
            "datasets": [{"name": d.name, "source": d.source, "selection": d.selection, "limit": d.limit,
                          "revision": d.revision} for d in spec.datasets],
            "meter": meter[-1] if meter else None,
            "meter_sessions": meter,
            "meter_uncertainty": uncertainty[-1] if uncertainty else None,
            "meter_uncertainty_sessions": uncertainty,
            "idle_baseline": idle.__dict__ if idle else None,
            "answers_by_status": results.status_counts(db),
            "created_utc": run_row.created_utc,
            "events": events,
        }
    finally:
        db.close()


def build_run_report(out_dir: Path, mode: str = "paper", *, report_root: Path | None = None,
                     extra_info: dict[str, Any] | None = None, published: bool = True, plots: bool = True) -> Path:
    """The report of a result folder, written to ``report_root/report`` (default: inside the folder)."""
    from bench.report import build_report
    from bench.report.devices import load_devices
    from bench.report.run_folder import load_run

    loaded = load_run(out_dir, mode)
    info = {**loaded.run_info, **report_run_info(run_facts(out_dir)), "protocol": run_protocol(out_dir),
            **(extra_info or {})}
    paths = build_report(loaded.frame, report_root or out_dir, run_info=info, traces=loaded.traces,
                         published=published, plots=plots, device_data=load_devices(out_dir / "results.db"),
                         review_inputs=loaded.review)
    return paths.report_dir


def report_run_info(facts: dict[str, Any]) -> dict[str, str]:
    """The run's identity in a few readable lines for the report header (the manifest has everything)."""
    idle, meter = facts["idle_baseline"] or {}, facts["meter"] or {}
    return {
        "name": facts["spec"]["name"],
        "spec": f"{facts['spec']['name']} (sha256 {facts['spec']['sha256'][:16]})",
        "toolkit": facts["toolkit_version"],
        "idle baseline": (f"{idle.get('mean_w', float('nan')):.3f} W (sd {idle.get('sd_w', 0):.3f}, "
                          f"{idle.get('n_samples', 0)} samples, {idle.get('source', '?')})"),
        "meter": f"{meter.get('driver', '?')} {meter.get('device_id', '')} ({meter.get('nominal_rate_hz', '?')} Hz)",
        "meter uncertainty": describe_sessions(facts.get("meter_uncertainty_sessions") or []),
        "answers": ", ".join(f"{k} {v}" for k, v in facts["answers_by_status"].items()),
        "versions": identity_line(facts["identity"]),
    }


def run_protocol(out_dir: Path) -> str:
    """The measurement protocol of the stored spec (warm-up, keep-alive, cooldown, context), for the report."""
    from bench.report.protocol import describe

    db = results.connect_readonly(out_dir / "results.db")
    try:
        return describe(results.stored_spec(db))
    finally:
        db.close()


def identity_line(identity: RunIdentity | None) -> str:
    """Prompt, task and scorer versions the stored numbers were made with, in one line."""
    if identity is None:
        return "not recorded (the run predates the identity snapshot)"
    tasks = ", ".join(f"{d.name} {d.task_version}" for d in identity.datasets)
    scoring = ", ".join(f"{m} {v}" for m, v in identity.scoring.items()) or "not scored"
    return f"prompts {identity.prompt_version}; tasks {tasks}; scorers {scoring}"


def pipeline(spec: Spec, out_dir: Path, *, progress: bool = True, key_path: Path | None = None,
             backend: Backend | None = None) -> PipelineOutcome:
    if any(dataset(d.name).executes_answers for d in spec.datasets):
        from bench.scoring.execution import require

        require()  # answers that could not be scored here are hours wasted on a Pi: refuse before the run
    outcome = run(spec, out_dir, progress=progress, backend=backend)
    if outcome.interrupted:
        return PipelineOutcome(outcome, [], out_dir / "report", False)
    scores = score_run(out_dir, spec.scoring_modes)
    report_dir = build_run_report(out_dir, spec.scoring_modes[0])
    seal_run(out_dir, key_path)
    return PipelineOutcome(outcome, scores, report_dir, True)


def seal_run(out_dir: Path, key_path: Path | None = None):
    """Sign a run folder: its facts from the DB into the manifest, the WAL folded first so one DB file is sealed."""
    from bench.provenance import seal

    facts = run_facts(out_dir)
    results.finalize(out_dir / "results.db")
    return seal(out_dir, facts, key_path=key_path)


def verify_run(result_dir: Path, trusted_signers: Path | None = None, *, check_numbers: bool = True) -> VerifyReport:
    """`bench verify`: the seal (signature, checksums, manifest), a merged fleet folder's chain to its devices and,
    with ``check_numbers``, the run identity and every report number against the results DB."""
    checks = [run_checks.fleet_chain] + ([run_checks.identity_and_numbers] if check_numbers else [])
    return verify(result_dir, trusted_signers, checks=checks)
