"""Running the fleet playbook from `bench fleet status` (the same `ansible-playbook` a user types)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench.errors import FleetError
from bench.fleet.inventory import ansible_tool


def run_playbook(inventory: Path, playbook: Path, tags: list[str], fleet_dir: Path) -> int:
    """Run it; returns its exit status when only some hosts failed or were unreachable (2, 4: their rows say so)."""
    exe = ansible_tool("ansible-playbook")
    if exe is None:
        raise FleetError("ansible-playbook not found: the fleet commands need ansible-core (pip install '.[fleet]')")
    if not Path(playbook).is_file():
        raise FleetError(f"{playbook}: no such playbook (run from the checkout, or pass --playbook)")
    cmd = [exe, "-i", str(inventory), str(playbook), "--tags", ",".join(tags),
           "-e", f"fleet_dir={Path(fleet_dir).resolve()}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode not in (0, 2, 4):
        tail = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["(no output)"])[-1]
        raise FleetError(f"ansible-playbook {playbook} --tags {','.join(tags)} failed (rc {proc.returncode}): {tail}")
    return proc.returncode
