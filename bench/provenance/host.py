"""Facts about the machine and the toolkit build that produced a result, for the manifest's predicate.

Every probe tolerates absence: a field that cannot be read is None (never an exception), because the same code
runs on a Pi 4, in an arm64 container, on a laptop and in CI. The "source hash" (sha256 over the package's own
``*.py`` files and shipped catalog files) pins the exact code that ran, as MLPerf's power tooling hashes its sources.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import re
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent.parent
# Written at image build time (e.g. `git rev-parse HEAD > bench/provenance/git_commit.txt`) when .git is absent.
BAKED_COMMIT = Path(__file__).resolve().parent / "git_commit.txt"
_SUBPROCESS_TIMEOUT_S = 3.0

# Raspberry Pi new-style revision codes (bit 23 set): fields per the Raspberry Pi documentation.
_PI_TYPES = {0x08: "3B", 0x0D: "3B+", 0x0E: "3A+", 0x11: "4B", 0x12: "Zero 2 W", 0x13: "400", 0x14: "CM4",
             0x17: "5", 0x18: "CM5"}
_PI_PROCESSORS = {0: "BCM2835", 1: "BCM2836", 2: "BCM2837", 3: "BCM2711", 4: "BCM2712"}
_PI_MEMORY = {0: "256MB", 1: "512MB", 2: "1GB", 3: "2GB", 4: "4GB", 5: "8GB", 6: "16GB"}
_PI_MAKERS = {0: "Sony UK", 1: "Egoman", 2: "Embest", 3: "Sony Japan", 4: "Embest", 5: "Stadium"}


def _read(root: Path, path: str) -> str | None:
    """A small text file under ``root``, stripped, or None if absent/unreadable (device-tree strings end in NUL)."""
    try:
        return (root / path.lstrip("/")).read_bytes().decode("utf-8", errors="replace").strip("\x00\n\r\t ")
    except OSError:
        return None


def _kv(text: str | None, sep: str = ":") -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (text or "").splitlines():
        key, found, value = line.partition(sep)
        if found and key.strip() and key.strip() not in out:
            out[key.strip()] = value.strip()
    return out


def decode_pi_revision(code: str | None) -> dict[str, Any] | None:
    """Decode a new-style Pi revision code (e.g. ``c03115`` = 4B rev 1.5, 4GB, Sony UK); None if not one."""
    if not code:
        return None
    try:
        value = int(code, 16)
    except ValueError:
        return None
    if not value & (1 << 23):
        return None
    return {
        "type": _PI_TYPES.get((value >> 4) & 0xFF, f"0x{(value >> 4) & 0xFF:02x}"),
        "board_revision": f"1.{value & 0xF}",
        "processor": _PI_PROCESSORS.get((value >> 12) & 0xF),
        "manufacturer": _PI_MAKERS.get((value >> 16) & 0xF),
        "memory": _PI_MEMORY.get((value >> 20) & 0x7),
    }


def _board(root: Path) -> dict[str, Any]:
    cpuinfo = _kv(_read(root, "/proc/cpuinfo"))
    revision = cpuinfo.get("Revision")
    serial = cpuinfo.get("Serial")
    return {
        "model": _read(root, "/proc/device-tree/model") or cpuinfo.get("Model"),
        "revision": revision,
        "revision_decoded": decode_pi_revision(revision),
        # The serial identifies one board; a salted hash lets results be matched to a board without publishing it.
        "serial_sha256": hashlib.sha256(f"edge-llm-bench:{serial}".encode()).hexdigest() if serial else None,
    }


def _cpu(root: Path) -> dict[str, Any]:
    text = _read(root, "/proc/cpuinfo")
    info = _kv(text)
    lines = [line.partition(":") for line in (text or "").splitlines()]
    parts = sorted({value.strip() for key, _, value in lines if key.strip() == "CPU part"})
    governors = _per_cpu(root, "cpufreq/scaling_governor")
    return {
        "model": info.get("model name") or info.get("Hardware") or (platform.processor() or None),
        "cpu_parts": parts or None,  # ARM part numbers, e.g. 0xd08 = Cortex-A72 on a Pi 4
        "cores_logical": os.cpu_count(),
        "governor": governors[0] if len(set(governors)) == 1 else (sorted(set(governors)) or None),
        "scaling_max_khz": _int(_first(_per_cpu(root, "cpufreq/scaling_max_freq"))),
        "scaling_min_khz": _int(_first(_per_cpu(root, "cpufreq/scaling_min_freq"))),
    }


def _per_cpu(root: Path, leaf: str) -> list[str]:
    base = root / "sys/devices/system/cpu"
    try:
        cpus = sorted(p for p in base.iterdir() if re.fullmatch(r"cpu\d+", p.name))
    except OSError:
        return []
    return [v for v in (_read(root, f"/sys/devices/system/cpu/{c.name}/{leaf}") for c in cpus) if v]


def _first(values: list[str]) -> str | None:
    return values[0] if values else None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _memory(root: Path) -> dict[str, Any]:
    info = _kv(_read(root, "/proc/meminfo"))

    def kb(key: str) -> int | None:
        n = _int(info.get(key, "").split(" ")[0] or None)
        return n * 1024 if n is not None else None

    return {"ram_bytes": kb("MemTotal"), "swap_bytes": kb("SwapTotal")}


def _os(root: Path) -> dict[str, Any]:
    rel = {k: v.strip('"') for k, v in _kv(_read(root, "/etc/os-release"), "=").items()}
    return {
        "pretty_name": rel.get("PRETTY_NAME"),
        "id": rel.get("ID"),
        "version_id": rel.get("VERSION_ID"),
        "codename": rel.get("VERSION_CODENAME"),
        "kernel": platform.release(),
        "kernel_version": platform.version(),
        "machine": platform.machine(),
    }


def _container(root: Path, env: Mapping[str, str]) -> dict[str, Any]:
    hints = []
    if (root / ".dockerenv").exists():
        hints.append("/.dockerenv")
    if (root / "run/.containerenv").exists():
        hints.append("/run/.containerenv")
    if env.get("container"):
        hints.append(f"container={env['container']}")
    cgroup = _read(root, "/proc/1/cgroup") or ""
    for word in ("docker", "kubepods", "containerd", "lxc", "libpod"):
        if word in cgroup:
            hints.append(f"cgroup:{word}")
    return {"in_container": bool(hints), "hints": hints}


def _thermal(root: Path) -> dict[str, Any]:
    milli = _int(_read(root, "/sys/class/thermal/thermal_zone0/temp"))
    throttled = None
    if root == Path("/") and shutil.which("vcgencmd"):
        # Under-voltage or thermal throttling skews energy per token; the Pi firmware reports both here.
        out = _run(["vcgencmd", "get_throttled"])
        throttled = out.partition("=")[2] if out else None
    return {"cpu_temp_c": milli / 1000 if milli is not None else None, "throttled": throttled}


def _run(cmd: list[str], cwd: Path | None = None) -> str | None:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=_SUBPROCESS_TIMEOUT_S,
                              env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit(env: Mapping[str, str], package_dir: Path = PACKAGE_DIR) -> dict[str, Any]:
    """The toolkit's commit: ``$BENCH_GIT_COMMIT`` (set by the image build), else git, else the baked file."""
    if env.get("BENCH_GIT_COMMIT"):
        return {"commit": env["BENCH_GIT_COMMIT"].strip(), "source": "env", "dirty": None}
    repo = package_dir.parent
    if (repo / ".git").exists() and shutil.which("git"):
        commit = _run(["git", "-C", str(repo), "rev-parse", "--verify", "HEAD"])
        if commit:
            status = _run(["git", "-C", str(repo), "--no-optional-locks", "status", "--porcelain",
                           "--untracked-files=no"])
            return {"commit": commit, "source": "git", "dirty": bool(status) if status is not None else None}
    baked = _read(Path("/"), str(BAKED_COMMIT))
    if baked:
        return {"commit": baked.split()[0], "source": "file", "dirty": None}
    return {"commit": None, "source": None, "dirty": None}


def source_files(package_dir: Path = PACKAGE_DIR) -> dict[str, str]:
    """sha256 of each ``*.py`` file of the package and each shipped catalog file, by path relative to the package's
    parent (``bench/...``); caches and compiled files excluded."""
    out: dict[str, str] = {}
    base = package_dir.parent
    for path in package_dir.rglob("*"):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        rel = path.relative_to(base).as_posix()
        in_catalog = path.relative_to(package_dir).parts[0] == "catalog"
        if path.suffix == ".py" or (in_catalog and path.suffix not in (".pyc", ".pyo")):
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return dict(sorted(out.items(), key=lambda kv: kv[0].encode("utf-8")))


def source_hash(files: Mapping[str, str]) -> str:
    """sha256 of the ``sha256sum``-style listing of :func:`source_files`, so a shell can recompute it (from the
    directory holding ``bench/``; the exact command is in docs/provenance.md)."""
    listing = "".join(f"{digest}  {rel}\n" for rel, digest in files.items())
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def _probe(name: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:  # a probe must never stop sealing; the field is recorded as unknown instead
        log.warning("host probe %s failed: %s: %s", name, type(exc).__name__, exc)
        return None


def capture_host(root: Path = Path("/"), env: Mapping[str, str] | None = None,
                 package_dir: Path = PACKAGE_DIR) -> dict[str, Any]:
    """All host and build facts as a JSON-ready dict. ``root`` and ``env`` are parameters so tests can fake a Pi."""
    env = os.environ if env is None else env
    root = Path(root)
    from bench import __version__

    files = _probe("source_files", lambda: source_files(package_dir)) or {}
    return {
        "captured_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "board": _probe("board", lambda: _board(root)),
        "cpu": _probe("cpu", lambda: _cpu(root)),
        "memory": _probe("memory", lambda: _memory(root)),
        "os": _probe("os", lambda: _os(root)),
        "thermal": _probe("thermal", lambda: _thermal(root)),
        "container": _probe("container", lambda: _container(root, env)),
        "image_digest": env.get("BENCH_IMAGE_DIGEST") or None,
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "build": " ".join(platform.python_build()),
        },
        "toolkit": {
            "version": __version__,
            "git": _probe("git", lambda: git_commit(env, package_dir)),
            "source_sha256": source_hash(files) if files else None,
            "source_files": files or None,
        },
    }
