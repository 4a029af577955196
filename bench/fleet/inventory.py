"""The fleet's hosts, read from an Ansible inventory by Ansible itself (`ansible-inventory --list`).

The inventory is the one description of the fleet: which hosts run shards (the ``fleet`` group), how to reach
them, and each host's meter driver and options. Letting Ansible parse it means YAML and INI inventories, group
variables and their precedence mean exactly what they mean to the playbook.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import FleetError

FLEET_GROUP = "fleet"


@dataclass(frozen=True)
class Host:
    """One measuring device. ``speed`` scales predicted time (1.0 = the paper's Pi 4); ``vars`` as Ansible sees them."""

    name: str
    speed: float = 1.0
    vars: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def load_inventory(path: Path, group: str = FLEET_GROUP) -> list[Host]:
    """The hosts of ``group`` in inventory order, with their merged variables."""
    exe = ansible_tool("ansible-inventory")
    if exe is None:
        raise FleetError("ansible-inventory not found: the fleet commands need ansible-core (pip install '.[fleet]', "
                         "which `make venv` does)")
    if not Path(path).is_file():
        raise FleetError(f"{path}: no such inventory file")
    proc = subprocess.run([exe, "-i", str(path), "--list"], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise FleetError(f"{path}: ansible-inventory failed: {last}")
    return hosts_from_listing(json.loads(proc.stdout), str(path), group)


def ansible_tool(name: str) -> str | None:
    """An Ansible command from this interpreter's environment (the venv `make venv` built), else from PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


def hosts_from_listing(listing: dict[str, Any], where: str, group: str = FLEET_GROUP) -> list[Host]:
    """Hosts of ``group`` (and its child groups) from `ansible-inventory --list` JSON."""
    if group not in listing:
        raise FleetError(f"{where}: no group {group!r}: put the measuring hosts under all.children.{group}.hosts")
    names: list[str] = []
    stack = [group]
    while stack:
        g = listing.get(stack.pop(0), {})
        names += [h for h in g.get("hosts", []) if h not in names]
        stack += g.get("children", [])
    if not names:
        raise FleetError(f"{where}: group {group!r} has no hosts")
    hostvars = listing.get("_meta", {}).get("hostvars", {})
    hosts = []
    for name in names:
        hv = hostvars.get(name, {})
        speed = hv.get("fleet_speed", 1.0)
        if isinstance(speed, bool) or not isinstance(speed, (int, float)) or speed <= 0:
            raise FleetError(f"{where}: {name}: fleet_speed: expected a number > 0, got {speed!r}")
        hosts.append(Host(name, float(speed), hv))
    return hosts


def synthetic_hosts(n: int) -> list[Host]:
    """``pi1`` .. ``piN`` at the paper's speed: what-if plans without an inventory."""
    return [Host(f"pi{i}") for i in range(1, n + 1)]
