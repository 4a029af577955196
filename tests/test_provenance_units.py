"""Provenance building blocks: host probes on a faked Pi, manifest layout and merging, SHA256SUMS rules, SSHSIG."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.errors import ProvenanceError
from bench.provenance import checksums, host, manifest, signing
from bench.provenance.checksums import MANIFEST_NAME, SIG_NAME, SUMS_NAME

PI_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
CPU part\t: 0xd08

processor\t: 1
CPU part\t: 0xd08

Hardware\t: BCM2835
Revision\t: c03115
Serial\t\t: 10000000abcdef01
Model\t\t: Raspberry Pi 4 Model B Rev 1.5
"""


def fake_pi(root: Path) -> Path:
    files = {
        "proc/device-tree/model": "Raspberry Pi 4 Model B Rev 1.5\x00",
        "proc/cpuinfo": PI_CPUINFO,
        "proc/meminfo": "MemTotal:        3884240 kB\nMemFree:  1000 kB\nSwapTotal:        102396 kB\n",
        "etc/os-release": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
        "VERSION_CODENAME=bookworm\n",
        "sys/class/thermal/thermal_zone0/temp": "51121\n",
        "proc/1/cgroup": "0::/system.slice/docker-abc.scope\n",
    }
    for cpu in ("cpu0", "cpu1", "cpufreq"):  # "cpufreq" is not a CPU and must be ignored
        files[f"sys/devices/system/cpu/{cpu}/cpufreq/scaling_governor"] = "ondemand\n"
        files[f"sys/devices/system/cpu/{cpu}/cpufreq/scaling_max_freq"] = "1800000\n"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / ".dockerenv").touch()
    return root


def test_host_reads_a_pi(tmp_path):
    env = {"BENCH_IMAGE_DIGEST": "sha256:feed", "BENCH_GIT_COMMIT": "abc123"}
    facts = host.capture_host(fake_pi(tmp_path), env=env)
    assert facts["board"]["model"] == "Raspberry Pi 4 Model B Rev 1.5"
    assert facts["board"]["revision"] == "c03115"
    assert facts["board"]["revision_decoded"] == {
        "type": "4B", "board_revision": "1.5", "processor": "BCM2711", "manufacturer": "Sony UK", "memory": "4GB"}
    assert facts["board"]["serial_sha256"] == hashlib.sha256(b"edge-llm-bench:10000000abcdef01").hexdigest()
    assert "10000000abcdef01" not in json.dumps(facts)
    assert facts["cpu"]["governor"] == "ondemand" and facts["cpu"]["scaling_max_khz"] == 1800000
    assert facts["cpu"]["cpu_parts"] == ["0xd08"] and facts["cpu"]["model"] == "BCM2835"
    assert facts["memory"] == {"ram_bytes": 3884240 * 1024, "swap_bytes": 102396 * 1024}
    assert facts["os"]["pretty_name"] == "Debian GNU/Linux 12 (bookworm)" and facts["os"]["version_id"] == "12"
    assert facts["thermal"]["cpu_temp_c"] == pytest.approx(51.121)
    assert facts["container"]["in_container"] and "cgroup:docker" in facts["container"]["hints"]
    assert facts["image_digest"] == "sha256:feed"
    assert facts["toolkit"]["git"] == {"commit": "abc123", "source": "env", "dirty": None}
    json.dumps(facts, allow_nan=False)


def test_host_tolerates_absence(tmp_path):
    facts = host.capture_host(tmp_path, env={})
    assert facts["board"] == {"model": None, "revision": None, "revision_decoded": None, "serial_sha256": None}
    assert facts["memory"] == {"ram_bytes": None, "swap_bytes": None}
    assert facts["cpu"]["governor"] is None and facts["os"]["pretty_name"] is None
    assert facts["container"] == {"in_container": False, "hints": []}
    assert facts["image_digest"] is None
    assert facts["python"]["version"] and facts["toolkit"]["version"]


def test_mixed_governors_are_all_reported(tmp_path):
    root = fake_pi(tmp_path)
    (root / "sys/devices/system/cpu/cpu1/cpufreq/scaling_governor").write_text("performance\n")
    assert host.capture_host(root, env={})["cpu"]["governor"] == ["ondemand", "performance"]


def test_old_style_revision_is_not_decoded():
    assert host.decode_pi_revision("000e") is None
    assert host.decode_pi_revision("zz") is None


def test_source_hash_covers_python_and_catalog_files(tmp_path):
    pkg = tmp_path / "bench"
    shutil.copytree(Path(host.__file__).resolve().parents[1], pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "__pycache__").mkdir(exist_ok=True)
    (pkg / "__pycache__" / "x.pyc").write_bytes(b"ignored")
    files = host.source_files(pkg)
    assert "bench/provenance/host.py" in files and "bench/catalog/models.toml" in files
    assert not any("__pycache__" in f for f in files)
    listing = "".join(f"{d}  {p}\n" for p, d in sorted(files.items()))
    before = host.source_hash(files)
    assert before == hashlib.sha256(listing.encode()).hexdigest()
    (pkg / "catalog" / "models.toml").write_text((pkg / "catalog" / "models.toml").read_text() + "\n# edit\n")
    assert host.source_hash(host.source_files(pkg)) != before
    assert host.capture_host(tmp_path, env={}, package_dir=pkg)["toolkit"]["source_sha256"] != before


def test_git_commit_falls_back_to_none_without_git(tmp_path):
    pkg = tmp_path / "bench"
    pkg.mkdir()
    got = host.git_commit({}, pkg)
    assert got["source"] in (None, "file")


# --- manifest --------------------------------------------------------------------------------------------------------


def small_folder(root: Path) -> Path:
    (root / "report").mkdir(parents=True)
    (root / "spec.toml").write_text("name = 'x'\n")
    (root / "report" / "summary.md").write_text("ok\n")
    (root / SUMS_NAME).write_text("stale\n")
    (root / SIG_NAME).write_text("stale\n")
    (root / MANIFEST_NAME).write_text("{}\n")
    return root


def test_manifest_is_an_in_toto_statement(tmp_path):
    folder = small_folder(tmp_path / "r")
    facts = {"spec_sha256": "ab" * 32, "future_field": [1, 2]}
    m = manifest.build_manifest(folder, facts, host={"board": {"model": "Pi"}})
    assert m["_type"] == "https://in-toto.io/Statement/v1"
    assert m["predicateType"] == manifest.PREDICATE_TYPE and ":" in m["predicateType"]
    assert m["subject"] == [
        {"name": "report/summary.md", "digest": {"sha256": hashlib.sha256(b"ok\n").hexdigest()}},
        {"name": "spec.toml", "digest": {"sha256": hashlib.sha256(b"name = 'x'\n").hexdigest()}},
    ]
    assert m["predicate"]["future_field"] == [1, 2] and m["predicate"]["host"] == {"board": {"model": "Pi"}}
    assert m["predicate"]["spec_sha256"] == "ab" * 32


def test_manifest_facts_host_wins_and_values_are_normalised(tmp_path):
    np = pytest.importorskip("numpy")

    @dataclass(frozen=True)
    class Baseline:
        idle_w: float

    folder = small_folder(tmp_path / "r")
    facts = {"host": {"from": "run"}, "n": np.int64(3), "w": np.float32(1.5), "nan": math.nan,
             "path": Path("/x/y"), "baseline": Baseline(2.5), "tuple": (1, "a")}
    written = manifest.write_manifest(folder, facts, host={"from": "seal"})
    pred = json.loads((folder / MANIFEST_NAME).read_text())["predicate"]
    assert pred == written["predicate"]
    assert pred["host"] == {"from": "run"} and pred["n"] == 3 and pred["w"] == 1.5 and pred["nan"] is None
    assert pred["path"] == "/x/y" and pred["baseline"] == {"idle_w": 2.5} and pred["tuple"] == [1, "a"]


def test_manifest_refuses_unserialisable_facts_naming_the_key(tmp_path):
    with pytest.raises(ProvenanceError, match=r"predicate\.meter\.raw: bytes"):
        manifest.build_manifest(small_folder(tmp_path / "r"), {"meter": {"raw": b"\x00"}}, host={})


def test_manifest_render_is_deterministic(tmp_path):
    folder = small_folder(tmp_path / "r")
    a = manifest.render_manifest(manifest.build_manifest(folder, {"b": 1, "a": 2}, host={}))
    b = manifest.render_manifest(manifest.build_manifest(folder, {"a": 2, "b": 1}, host={}))
    assert a == b and a.endswith(b"\n")


# --- checksums -------------------------------------------------------------------------------------------------------


def test_sums_format_order_and_exclusions(tmp_path):
    folder = small_folder(tmp_path / "r")
    (folder / "Zeta").write_text("z")
    (folder / "ä.txt").write_text("u")
    (folder / "report" / "a b.csv").write_text("spaces ok")
    data = checksums.render(checksums.compute(folder))
    paths = [line[66:] for line in data.decode().splitlines()]
    assert paths == sorted(paths, key=lambda p: p.encode()) and SUMS_NAME not in paths and SIG_NAME not in paths
    assert paths == ["Zeta", "manifest.json", "report/a b.csv", "report/summary.md", "spec.toml", "ä.txt"]
    assert all(len(line.split("  ", 1)[0]) == 64 for line in data.decode().splitlines())
    assert data == checksums.render(checksums.compute(folder))


@pytest.mark.parametrize("name", ["bad\nname", "back\\slash", "tab\tname", "cr\rname"])
def test_unlistable_names_are_refused_clearly(tmp_path, name):
    folder = small_folder(tmp_path / "r")
    (folder / "report" / name).write_text("x")
    with pytest.raises(ProvenanceError, match=r"report/.*(newline|backslash|control)"):
        checksums.write_sums(folder)
    assert (folder / SUMS_NAME).read_text() == "stale\n"


def test_symlinks_are_refused(tmp_path):
    folder = small_folder(tmp_path / "r")
    (folder / "link").symlink_to(folder / "spec.toml")
    with pytest.raises(ProvenanceError, match="link: symlink"):
        checksums.list_files(folder)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("abc  x\n", "not '<64 hex>"),
        (f"{'a' * 64}  ../etc/passwd\n", "not a plain relative path"),
        (f"{'a' * 64}  /abs\n", "not a plain relative path"),
        (f"{'a' * 64}  x\n{'b' * 64}  x\n", "listed twice"),
        (f"{'a' * 64}  x", "no newline"),
        (f"{'A' * 64}  x\n", "not '<64 hex>"),
        (f"{'a' * 64} *x\n", "not '<64 hex>"),
    ],
)
def test_sums_parser_is_strict(text, problem):
    _, problems = checksums.parse(text.encode())
    assert any(problem in why for _, why in problems), problems


# --- signing ---------------------------------------------------------------------------------------------------------


def test_sshsig_round_trip_and_tamper(tmp_path):
    key = signing.create_key(tmp_path / "k" / "key", identity="pi4-lab@example")
    armored = signing.sign(key.private_key, b"data\n")
    assert armored.startswith("-----BEGIN SSH SIGNATURE-----\n") and armored.endswith("-----END SSH SIGNATURE-----\n")
    assert all(len(line) <= 70 for line in armored.splitlines())
    sig = signing.parse_signature(armored)
    assert sig.namespace == signing.NAMESPACE and sig.hash_alg == "sha512" and sig.fingerprint == key.fingerprint
    signing.verify_signature(sig, b"data\n")
    with pytest.raises(ProvenanceError, match="does not match"):
        signing.verify_signature(sig, b"data!\n")
    with pytest.raises(ProvenanceError, match="namespace"):
        signing.verify_signature(sig, b"data\n", namespace="other@1")
    signers = signing.parse_signers(key.signers_line())
    assert signing.find_signer(signers, sig, identity="pi4-lab@example").principals == ("pi4-lab@example",)
    with pytest.raises(ProvenanceError, match="not 'someone'"):
        signing.find_signer(signers, sig, identity="someone")


def test_key_files_and_permissions(tmp_path):
    path = tmp_path / "cfg" / "signing_key"
    key = signing.load_or_create_key(path, identity="lab-pi")
    assert (path.stat().st_mode & 0o777) == 0o600
    assert path.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert path.with_name("signing_key.pub").read_text().startswith("ssh-ed25519 ")
    assert path.with_name("signing_key.allowed_signers").read_text() == key.signers_line()
    again = signing.load_or_create_key(path)
    assert again.fingerprint == key.fingerprint and again.identity == "lab-pi"
    with pytest.raises(ProvenanceError, match="already exists"):
        signing.create_key(path)
    path.chmod(0o644)
    with pytest.raises(ProvenanceError, match="readable by others"):
        signing.load_key(path)


def test_default_key_path_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_SIGNING_KEY", str(tmp_path / "k"))
    assert signing.default_key_path() == tmp_path / "k"
    monkeypatch.delenv("BENCH_SIGNING_KEY")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert signing.default_key_path() == tmp_path / "cfg" / "edge-llm-bench" / "signing_key"


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
def test_encrypted_or_foreign_keys_are_refused(tmp_path):
    import subprocess

    enc = tmp_path / "enc"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(enc)], check=True)
    with pytest.raises(ProvenanceError, match="passphrase"):
        signing.load_key(enc)
    rsa = tmp_path / "rsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "1024", "-N", "", "-f", str(rsa)], check=True)
    with pytest.raises(ProvenanceError, match="not Ed25519"):
        signing.load_key(rsa)
    junk = tmp_path / "junk"
    junk.write_text("not a key")
    junk.chmod(0o600)
    with pytest.raises(ProvenanceError, match="not an OpenSSH private key"):
        signing.load_key(junk)


def test_refuse_inside(tmp_path):
    (tmp_path / "r").mkdir()
    with pytest.raises(ProvenanceError, match="inside the result folder"):
        signing.refuse_inside(tmp_path / "r" / "sub" / "key", tmp_path / "r")
    signing.refuse_inside(tmp_path / "r2" / "key", tmp_path / "r")  # a sibling with a common prefix is fine


def test_allowed_signers_options(tmp_path):
    key = signing.create_key(tmp_path / "key")
    pub = signing.openssh_public(key.public_key)
    sig = signing.parse_signature(signing.sign(key.private_key, b"m"))
    text = (
        "# comment\n\n"
        f'other@x,edge-llm-bench namespaces="git,edge-llm-*" {pub}\n'
        "someone ssh-rsa AAAAB3NzaC1yc2E=\n"
    )
    [only] = signing.parse_signers(text)
    assert only.namespaces == ("git", "edge-llm-*") and signing.find_signer([only], sig) is only
    expired = signing.parse_signers(f'edge-llm-bench valid-before="20200101Z" {pub}\n')
    with pytest.raises(ProvenanceError, match="expired"):
        signing.find_signer(expired, sig)
    wrong_ns = signing.parse_signers(f'edge-llm-bench namespaces="git" {pub}\n')
    with pytest.raises(ProvenanceError, match="namespace"):
        signing.find_signer(wrong_ns, sig)
    with pytest.raises(ProvenanceError, match="line 1: unknown option"):
        signing.parse_signers(f"edge-llm-bench bogus-opt {pub}\n")


@pytest.mark.parametrize("identity", ["has space", "quo\"te", ""])
def test_bad_identity_is_refused(tmp_path, identity):
    with pytest.raises(ProvenanceError, match="identity"):
        signing.create_key(tmp_path / "key", identity=identity)
    assert not (tmp_path / "key").exists()
