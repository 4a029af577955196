"""End-to-end provenance: seal a realistic result folder, then tamper with it in every way a reviewer should catch.

Interop is checked against the real binaries a reviewer would use: coreutils `sha256sum -c` and `ssh-keygen -Y`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import cli
import bench.cli.provenance  # noqa: F401  (registers sign/verify/keygen on `cli`)
from bench.errors import ProvenanceError
from bench import run_checks
from bench.pipeline import verify_run
from bench.provenance import seal, signing, verify
from bench.provenance.verify import Findings, Problem
from bench.provenance.checksums import MANIFEST_NAME, SIG_NAME, SIGNERS_NAME, SUMS_NAME

SSH_KEYGEN = shutil.which("ssh-keygen")
SHA256SUM = shutil.which("sha256sum")
needs_ssh = pytest.mark.skipif(SSH_KEYGEN is None, reason="ssh-keygen not installed (apt-get install openssh-client)")

FACTS = {
    "spec": 'name = "smoke"\nmodels = ["qwen2.5:0.5b-instruct-q4_K_M"]\n',
    "spec_sha256": "0" * 64,
    "toolkit_version": "0.1.0",
    "backend": {"name": "ollama", "version": "0.6.5", "models": {"qwen2.5:0.5b-instruct-q4_K_M": "sha256:abc"}},
    "datasets": [{"id": "gsm8k", "revision": "e53f048", "selection_sha256": "1" * 64}],
    "meter": {"driver": "um25c", "device_id": "00:11", "sample_rate_hz": 10,
              "log_sha256": {"meter/samples.jsonl": "2" * 64}},
    "idle_baseline": {"idle_w": 2.71, "n_samples": 600},
    "started_utc": "2025-04-01T10:00:00+00:00",
    "finished_utc": "2025-04-01T11:00:00+00:00",
    "answers": {"ok": 3, "timeout": 1},
    "results_schema_version": 4,
    "something_new": {"kept": True},
}


def write_results_db(path: Path) -> None:
    """A results DB written through the toolkit's own write path: one ok answer and one timeout."""
    from bench import results
    from bench.spec import load_spec

    spec = load_spec("smoke")
    db = results.connect(path)
    run, _ = results.open_run(db, spec.name, spec.sha256, spec.source_text)
    for item_id, status in (("q1", "ok"), ("q2", "timeout")):
        results.record_answer(db, results.AnswerRecord(
            run_id=run.run_id, model="qwen2.5:0.5b-instruct-q4_0", dataset="gsm8k", item_id=item_id,
            item_sha256="0" * 64, prompt_sha256="1" * 64, status=status, reason="" if status == "ok" else "1200 s"))
    db.close()
    results.finalize(path)


def make_result_folder(root: Path) -> Path:
    """A small but realistic folder: SQLite DB, report (html, md, csv, png, svg), spec, meter log."""
    root.mkdir(parents=True)
    (root / "spec.toml").write_text(FACTS["spec"], encoding="utf-8")
    write_results_db(root / "results.db")
    report = root / "report"
    (report / "plots").mkdir(parents=True)
    (report / "tables").mkdir()
    (report / "report.html").write_text("<html><body><h1>Energy</h1></body></html>\n", encoding="utf-8")
    (report / "summary.md").write_text("| model | J/answer |\n|---|---|\n| q | 12.5 |\n", encoding="utf-8")
    (report / "tables" / "energy.csv").write_text("model,energy_j\nq,12.5\n", encoding="utf-8")
    (report / "plots" / "energy.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) + b"IEND\xaeB`\x82")
    (report / "plots" / "energy.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>\n', encoding="utf-8")
    (root / "meter").mkdir()
    log = "".join(f'{{"t_ns": {i * 100_000_000}, "power_w": 3.{i % 10}}}\n' for i in range(40))
    (root / "meter" / "samples.jsonl").write_text(log, encoding="utf-8")
    (root / "meter" / "daemon.json").write_text('{"driver": "um25c"}\n', encoding="utf-8")
    return root


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Never touch the developer's real key: HOME and XDG point into a temporary directory."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.delenv("BENCH_SIGNING_KEY", raising=False)


@pytest.fixture
def key_path(tmp_path) -> Path:
    return tmp_path / "keys" / "signing_key"


@pytest.fixture
def sealed(tmp_path, key_path) -> Path:
    folder = make_result_folder(tmp_path / "results" / "run1")
    seal(folder, FACTS, key_path, host={"board": {"model": "Raspberry Pi 4 Model B Rev 1.5"}})
    return folder


def all_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_untouched_folder_passes(sealed, key_path):
    report = verify(sealed)
    assert report.ok, report.lines()
    listed = (sealed / SUMS_NAME).read_text().splitlines()
    assert report.files_checked == len(listed) == len(all_files(sealed)) - 2
    assert report.signer.startswith("edge-llm-bench (SHA256:")
    assert verify(sealed, trusted_signers=key_path.with_name("signing_key.allowed_signers")).ok


def test_seal_layout_and_no_private_key_in_folder(sealed, key_path):
    names = all_files(sealed)
    for required in (MANIFEST_NAME, SUMS_NAME, SIG_NAME, SIGNERS_NAME, "results.db", "report/plots/energy.png"):
        assert required in names
    assert (key_path.stat().st_mode & 0o777) == 0o600
    for rel in names:
        assert b"PRIVATE KEY" not in (sealed / rel).read_bytes(), rel
    assert (sealed / SIGNERS_NAME).read_text().startswith('edge-llm-bench namespaces="edge-llm-bench@1" ssh-ed25519 ')


def flipped(path: Path, offset: int, mask: int) -> bytes:
    data = path.read_bytes()
    path.write_bytes(data[:offset] + bytes([data[offset] ^ mask]) + data[offset + 1 :])
    return data


def assert_names(report, rel: str) -> None:
    assert not report.ok, f"tampering with {rel} went unnoticed"
    assert rel in {p.path for p in report.problems}, f"{rel} not named: {report.lines()}"


def test_any_flipped_byte_in_any_file_fails_and_names_it(sealed):
    """Every file: first, middle and last byte with two masks. The signature (which no checksum covers) and
    allowed_signers: every byte; SHA256SUMS: every byte of its first and last lines (digest, separator, path, LF)."""
    for rel in all_files(sealed):
        path = sealed / rel
        data = path.read_bytes()
        offsets = {0, len(data) // 2, len(data) - 1}
        if rel in (SIG_NAME, SIGNERS_NAME):
            offsets |= set(range(len(data)))
        if rel == SUMS_NAME:
            first_end, last_start = data.index(b"\n"), data.rindex(b"\n", 0, len(data) - 1) + 1
            offsets |= set(range(first_end + 1)) | set(range(last_start, len(data)))
        masks = (0x01,) if rel == SIGNERS_NAME else (0x01, 0x80)
        for offset in sorted(offsets):
            for mask in masks:
                original = flipped(path, offset, mask)
                try:
                    assert_names(verify(sealed), rel)
                finally:
                    path.write_bytes(original)
    assert verify(sealed).ok


def test_deleting_any_file_fails_and_names_it(sealed):
    for rel in all_files(sealed):
        path = sealed / rel
        original = path.read_bytes()
        path.unlink()
        try:
            report = verify(sealed)
            assert_names(report, rel)
            assert any("missing" in p.message for p in report.problems if p.path == rel)
        finally:
            path.write_bytes(original)
    assert verify(sealed).ok


@pytest.mark.parametrize(
    "rel", ["extra.txt", "report/notes.md", "meter/.hidden", "new_dir/deep/file.bin", "results.db-wal"]
)
def test_adding_a_file_fails_and_names_it(sealed, rel):
    path = sealed / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    report = verify(sealed)
    assert_names(report, rel)
    assert "extra file" in next(p.message for p in report.problems if p.path == rel)


def test_adding_an_unlistable_name_fails_and_names_it(sealed):
    (sealed / "report" / "evil\nname").write_text("x")
    report = verify(sealed)
    assert not report.ok
    assert any(p.path == "report/evil\\nname" and "newline" in p.message for p in report.problems)


def test_wrong_key_fails(sealed, tmp_path):
    other = signing.create_key(tmp_path / "other" / "key")
    pinned = tmp_path / "pinned_signers"
    pinned.write_text(other.signers_line())
    report = verify(sealed, trusted_signers=pinned)
    assert not report.ok
    assert any(p.path == SIG_NAME and "not an allowed signer" in p.message for p in report.problems)


def test_resealed_by_another_key_is_caught_only_when_pinned(sealed, key_path, tmp_path):
    """An attacker can change a file and re-seal with their own key: integrity then holds, authenticity does not."""
    (sealed / "report" / "summary.md").write_text("| model | J/answer |\n| q | 1.0 |\n")
    seal(sealed, None, tmp_path / "attacker" / "key")
    assert verify(sealed).ok
    genuine = key_path.with_name("signing_key.allowed_signers")
    assert not verify(sealed, trusted_signers=genuine).ok


def test_wrong_namespace_fails(sealed, key_path):
    key = signing.load_key(key_path)
    sig = signing.sign(key.private_key, (sealed / SUMS_NAME).read_bytes(), namespace="file")
    (sealed / SIG_NAME).write_text(sig)
    report = verify(sealed)
    assert any(p.path == SIG_NAME and "namespace" in p.message for p in report.problems)


@pytest.mark.skipif(SHA256SUM is None, reason="coreutils sha256sum not installed")
def test_sha256sum_c_accepts_untouched_folder(sealed):
    done = subprocess.run([SHA256SUM, "--strict", "-c", SUMS_NAME], cwd=sealed, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": OK") == len((sealed / SUMS_NAME).read_text().splitlines())
    flipped(sealed / "results.db", 100, 0x01)
    done = subprocess.run([SHA256SUM, "-c", SUMS_NAME], cwd=sealed, capture_output=True, text=True)
    assert done.returncode != 0 and "results.db: FAILED" in done.stdout


def ssh_verify(folder: Path, signers: Path, identity: str = "edge-llm-bench") -> subprocess.CompletedProcess:
    with open(folder / SUMS_NAME, "rb") as stdin:
        return subprocess.run(
            [SSH_KEYGEN, "-Y", "verify", "-f", str(signers), "-I", identity, "-n", signing.NAMESPACE,
             "-s", str(folder / SIG_NAME)],
            stdin=stdin, capture_output=True, text=True,
        )


@needs_ssh
def test_ssh_keygen_accepts_our_signature(sealed, tmp_path):
    done = ssh_verify(sealed, sealed / SIGNERS_NAME)
    assert done.returncode == 0, done.stderr
    assert "Good" in done.stdout
    other = signing.create_key(tmp_path / "other" / "key")
    (tmp_path / "wrong").write_text(other.signers_line())
    assert ssh_verify(sealed, tmp_path / "wrong").returncode != 0
    flipped(sealed / SUMS_NAME, 3, 0x01)
    assert ssh_verify(sealed, sealed / SIGNERS_NAME).returncode != 0


@needs_ssh
def test_our_verifier_accepts_ssh_keygen_signature(sealed, key_path):
    ours = (sealed / SIG_NAME).read_bytes()
    (sealed / SIG_NAME).unlink()
    done = subprocess.run([SSH_KEYGEN, "-Y", "sign", "-f", str(key_path), "-n", signing.NAMESPACE, SUMS_NAME],
                          cwd=sealed, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    theirs = (sealed / SIG_NAME).read_bytes()
    assert verify(sealed).ok
    assert theirs == ours  # Ed25519 is deterministic: same key, namespace and message give the same SSHSIG bytes


@needs_ssh
def test_ssh_keygen_made_key_signs_and_verifies(tmp_path):
    """A key made by ssh-keygen itself works for seal, and a signature from it verifies both ways."""
    key = tmp_path / "sshkeys" / "id_ed25519"
    key.parent.mkdir()
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    folder = make_result_folder(tmp_path / "r")
    seal(folder, FACTS, key, host={})
    assert verify(folder).ok
    assert ssh_verify(folder, folder / SIGNERS_NAME).returncode == 0


def test_key_inside_folder_is_refused_and_nothing_written(tmp_path):
    folder = make_result_folder(tmp_path / "r")
    before = all_files(folder)
    with pytest.raises(ProvenanceError, match="inside the result folder"):
        seal(folder, FACTS, folder / "keys" / "k", host={})
    assert all_files(folder) == before
    assert not (folder / "keys").exists()


def test_private_key_file_in_folder_is_refused(tmp_path, key_path):
    folder = make_result_folder(tmp_path / "r")
    signing.create_key(key_path)
    shutil.copy(key_path, folder / "meter" / "oops")
    with pytest.raises(ProvenanceError, match="meter/oops: looks like a private key"):
        seal(folder, FACTS, key_path, host={})


def test_default_key_is_created_once_under_config(tmp_path):
    folder = make_result_folder(tmp_path / "r")
    first = seal(folder, FACTS, host={})
    expected = Path(os.environ["XDG_CONFIG_HOME"]) / "edge-llm-bench" / "signing_key"
    assert first.key_path == expected and (expected.stat().st_mode & 0o777) == 0o600
    assert seal(folder, FACTS, host={}).fingerprint == first.fingerprint


def test_sign_without_facts_keeps_the_run_predicate(sealed, key_path):
    import json

    before = json.loads((sealed / MANIFEST_NAME).read_text())["predicate"]
    seal(sealed, None, key_path)
    after = json.loads((sealed / MANIFEST_NAME).read_text())["predicate"]
    assert after == before
    assert verify(sealed).ok


# --- folder checks (composed by the pipeline) ---------------------------------------------------------------------


def test_folder_checks_report_their_findings_and_a_crash_is_a_problem(sealed):
    seen = []

    def finds(root, predicate):
        seen.append((root, predicate["answers"]))
        return Findings((Problem("report/", "numbers differ"),), ("a note",))

    def crashes(root, predicate):
        raise RuntimeError("boom")

    report = verify(sealed, checks=[finds, crashes])
    assert seen == [(sealed, FACTS["answers"])]
    assert report.lines() == [".: check crashes crashed: RuntimeError: boom", "report/: numbers differ"]
    assert "a note" in report.notes


def test_numbers_check_runs_on_a_copy_and_passes(sealed, monkeypatch):
    calls: list = []
    real_frame = run_checks.results.answers_frame

    def answers_frame(db, mode):
        calls.append(("frame", Path(db), mode))
        return real_frame(db, mode)

    def recompute_check(frame, report_dir):
        calls.append(("check", sorted(zip(frame["item_id"], frame["status"])), Path(report_dir)))
        return []

    monkeypatch.setattr(run_checks.results, "answers_frame", answers_frame)
    monkeypatch.setattr(run_checks, "recompute_check", recompute_check)
    before = all_files(sealed)
    report = verify_run(sealed)
    assert report.ok, report.lines()
    assert "no run identity recorded (the run predates the identity snapshot)" in report.notes
    frame_call, check_call = calls
    assert frame_call[1].name == "results.db" and sealed not in frame_call[1].parents and frame_call[2] == "paper"
    assert check_call[1] == [("q1", "ok"), ("q2", "timeout")] and check_call[2] == sealed / "report"
    assert all_files(sealed) == before


@pytest.mark.parametrize("outcome", [["energy_j mean differs: 12.5 vs 12.4"], ProvenanceError("bad db")])
def test_numbers_check_failure_is_a_problem(sealed, monkeypatch, outcome):
    def recompute_check(frame, report_dir):
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(run_checks, "recompute_check", recompute_check)
    report = verify_run(sealed)
    assert not report.ok
    assert [p.path for p in report.problems] == ["report/"]


def test_numbers_check_unavailable_without_a_report(sealed):
    shutil.rmtree(sealed / "report")
    report = verify_run(sealed)
    assert "numbers check unavailable: no results.db or report/ in the folder" in report.notes


# --- CLI ------------------------------------------------------------------------------------------------------------


def test_cli_keygen_sign_verify(tmp_path, key_path):
    runner = CliRunner()
    folder = make_result_folder(tmp_path / "r")
    done = runner.invoke(cli, ["keygen", "--key", str(key_path)])
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith('edge-llm-bench namespaces="edge-llm-bench@1" ssh-ed25519 ')
    done = runner.invoke(cli, ["sign", str(folder), "--key", str(key_path)])
    assert done.exit_code == 0, done.output
    done = runner.invoke(cli, ["verify", str(folder), "--no-numbers", "--trusted", str(key_path) + ".allowed_signers"])
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith(f"OK {folder}")

    (folder / "spec.toml").write_text("tampered")
    (folder / "meter" / "daemon.json").unlink()
    done = runner.invoke(cli, ["verify", str(folder), "--no-numbers"])
    assert done.exit_code != 0
    problems = [line for line in done.stdout.splitlines() if not line.startswith("note:")]
    assert "meter/daemon.json: missing (listed in SHA256SUMS)" in problems
    assert "spec.toml: content changed (sha256 differs from SHA256SUMS)" in problems


def test_cli_exit_status_through_main(sealed, key_path):
    """The real entry point: exit 0 when intact; otherwise non-zero, one line per problem naming the file on stdout
    and one error line on stderr."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "bench", "verify", str(sealed), "--no-numbers"]
    ok = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    (sealed / "results.db").write_bytes(b"")
    bad = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert bad.returncode != 0
    assert "results.db: content changed (sha256 differs from SHA256SUMS)" in bad.stdout.splitlines()
    assert len(bad.stderr.splitlines()) == 1 and bad.stderr.startswith("error: verify failed")
