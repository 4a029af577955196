"""The one install route (make meter-install -> scripts/meter-install.sh): what it writes is a config the daemon's
own parser accepts and a unit that systemd's own checker accepts; and the meter host's package list (the `meter`
extra) covers every third-party import of bench.meter."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bench.meter import config as meter_config

REPO = Path(__file__).resolve().parents[1]
# import name -> distribution name, where they differ
DIST = {"serial": "pyserial", "tomli_w": "tomli-w"}
# vendor packages a driver imports only when it is used (`--pip` adds them on the meter host)
OPTIONAL = {"joulescope", "pyvisa", "pyvisa_py", "pyvisa_sim"}


def install(tmp_path: Path, *args: str) -> Path:
    root = tmp_path / "root"
    prefix = tmp_path / "prefix"
    (prefix / "venv" / "bin").mkdir(parents=True)
    (prefix / "venv" / "bin" / "python").symlink_to(sys.executable)
    env = {"PATH": "/usr/bin:/bin", "BENCH": str(Path(sys.executable).with_name("bench"))}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "meter-install.sh"), *args, "--root", str(root),
                           "--prefix", str(prefix)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return root


def test_install_writes_a_config_the_daemon_accepts(tmp_path):
    root = install(tmp_path, "--driver", "ina-serial", "--opt", "port=/dev/ttyACM0", "--opt", "rate_hz=250")
    cfg = meter_config.load(root / "etc/edge-llm-bench/meter.toml")
    assert cfg.driver == "ina-serial" and cfg.options == {"port": "/dev/ttyACM0", "rate_hz": "250"}
    assert cfg.socket_path == "/run/edge-llm-bench/meter.sock" and cfg.group == "bench" and cfg.listen is None
    assert not (root / "etc/systemd/system/edge-llm-bench-meter.service.d/network.conf").exists()


def test_a_meter_host_gets_tls_keys_and_network_access(tmp_path):
    root = install(tmp_path, "--driver", "sim", "--listen", "0.0.0.0:7461")
    cfg = meter_config.load(root / "etc/edge-llm-bench/meter.toml")
    assert cfg.listen == "0.0.0.0:7461" and cfg.tls_dir == "/etc/edge-llm-bench/meter-tls"
    key = root / "etc/edge-llm-bench/meter-tls/key.pem"
    assert key.exists() and key.stat().st_mode & 0o077 == 0
    dropin = (root / "etc/systemd/system/edge-llm-bench-meter.service.d/network.conf").read_text()
    assert "PrivateNetwork=no" in dropin and "AF_INET6" in dropin


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_the_unit_passes_systemd_analyze_verify(tmp_path):
    root = install(tmp_path, "--driver", "sim")
    unit = root / "etc/systemd/system/edge-llm-bench-meter.service"
    assert not re.search(r"@[A-Z]+@", unit.read_text())  # every placeholder filled
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc.stdout + proc.stderr
    assert f"ExecStart={tmp_path / 'prefix'}/venv/bin/python -m bench.meter --config" in unit.read_text()


def test_the_meter_extra_covers_every_import_of_the_meter_package():
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["meter"]
    declared = {d.split(">")[0].split("=")[0].split("<")[0].strip() for d in extra}
    stdlib = set(sys.stdlib_module_names)
    imported: set[str] = set()
    for path in [*(REPO / "bench" / "meter").rglob("*.py"), REPO / "bench" / "cli" / "meter.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {DIST.get(m, m) for m in imported - stdlib - {"bench"} - OPTIONAL}
    assert third_party <= declared, f"bench.meter imports {sorted(third_party - declared)} not in the meter extra"
    assert declared - third_party == set(), f"the meter extra lists {sorted(declared - third_party)} never imported"


def test_each_vendor_driver_has_an_extra_with_its_packages():
    """meter-install.sh installs `meter` + `meter-<driver>`: the packages scpi (PyVISA, its pure-Python backend and
    PyUSB for USBTMC) and joulescope import lazily, pinned the same as in the toolkit's own dependencies."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    names = {e: {re.split(r"[<>=]", d)[0].strip() for d in extras[e]} for e in ("meter-scpi", "meter-joulescope")}
    assert names == {"meter-scpi": {"pyvisa", "pyvisa-py", "pyusb"}, "meter-joulescope": {"joulescope"}}
    assert set(extras["meter-scpi"] + extras["meter-joulescope"]) <= set(project["dependencies"])
    assert OPTIONAL - {"pyvisa_sim"} <= {"joulescope", "pyvisa", "pyvisa_py"}  # pyvisa-sim is for the tests only
    # the script's own package list, run as it runs it: meter + the driver's extra, and just meter for ina-serial
    snippet = re.search(r"mapfile -t meter_deps < <\(python3 -c '([^']+)'", (REPO / "scripts/meter-install.sh").read_text())
    listed = {d: subprocess.run([sys.executable, "-c", snippet.group(1), str(REPO / "pyproject.toml"), d],
                                capture_output=True, text=True, check=True).stdout.split("\n")[:-1]
              for d in ("scpi", "joulescope", "ina-serial")}
    assert listed == {"scpi": extras["meter"] + extras["meter-scpi"],
                      "joulescope": extras["meter"] + extras["meter-joulescope"], "ina-serial": extras["meter"]}
