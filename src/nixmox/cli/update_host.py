"""`nixmox update host`."""

from __future__ import annotations

import sys
from pathlib import Path

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.settings import connection
from nixmox.adapters.runner import Runner
from nixmox.core.errors import ConfigError
from nixmox.core.zones import zone
from nixmox.inventory.load import find_inventory, load_inventory
from nixmox.runtime.run import observed_run
from nixmox.updates.host.job import HostUpdate
from nixmox.updates.outcome import exit_code, report, run_result, summary
from nixmox.updates.privileges import host_needs, preflight


def run(config: Path | None, node: str | None, *, dry_run: bool, as_json: bool) -> int:
    """Update the selected nodes; exit 0 when none failed (held reboots included), else 1."""
    inv = load_inventory(find_inventory(config))
    if not inv.nodes:
        raise ConfigError(
            "the inventory declares no [[nodes]]: update host needs each node's address, "
            "root_dataset and reboot policy"
        )
    nodes = list(inv.nodes)
    if node is not None:
        nodes = [n for n in nodes if n.name == node]
        if not nodes:
            raise ConfigError(f"--node {node}: no such node in the inventory")
    api = Proxmox(connection(inv.proxmox))
    needs = [need for n in nodes for need in host_needs(n, inv.guests)]
    preflight(api, needs, "update host", dry_run=dry_run)
    update = HostUpdate(inv, api, Runner(dry_run=dry_run), zone(inv.timezone))
    if dry_run:
        outcomes = update.run(nodes)
    else:
        with observed_run(inv, "update host") as journaled:
            outcomes = update.run(nodes)
            journaled.result = run_result(outcomes)
            journaled.summary = summary(outcomes)
    if not as_json:
        for name, upgrades in update.upgrades.items():
            print(f"{name}: {len(upgrades)} upgrade(s)" + (":" if upgrades else ""))
            for upgrade in upgrades:
                print(f"  {upgrade}")
    report(outcomes, as_json=as_json, dry_run=dry_run, title="update host")
    sys.stdout.flush()
    # Only now, with the run journaled and reported: this node's own reboot.
    update.reboot_self()
    return exit_code(outcomes)
