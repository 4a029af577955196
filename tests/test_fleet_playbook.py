"""The fleet playbook as Ansible itself reads it: it parses, runs its roles in the documented order, and keeps
status and fetch out of a plain run (the container fleet runs it for real: tests/test_fleet_containers.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"


def _tasks(*args: str) -> list[str]:
    proc = subprocess.run([str(PLAYBOOK), "-i", "fleet/inventory.yml", "fleet/site.yml", "--list-tasks", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [ln.strip().split(" : ")[0] for ln in proc.stdout.splitlines() if " : " in ln and "TAGS" in ln]


def test_a_plain_run_sets_up_and_starts_shards_in_order():
    roles = list(dict.fromkeys(_tasks()))
    assert roles == ["toolkit", "image", "meter", "backend", "prepare", "keys", "shard"]


def test_status_and_fetch_only_when_named():
    assert set(_tasks("--tags", "status")) == {"status"}
    assert set(_tasks("--tags", "fetch")) == {"fetch"}


def test_both_inventories_parse():
    for inv in ("fleet/inventory.yml", "fleet/demo/inventory.yml"):
        proc = subprocess.run([str(PLAYBOOK), "-i", inv, "fleet/site.yml", "--syntax-check"], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
