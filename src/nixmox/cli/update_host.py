"""`nixmox update host`."""

from __future__ import annotations

import sys
from pathlib import Path

from nixmox.adapters.locks import node_claims
from nixmox.core.words import plural
from nixmox.inventory.load import find_inventory, load_inventory
from nixmox.runtime.run import run_job
from nixmox.updates.outcome import report
from nixmox.updates.runs import prepare_host_update


def run(config: Path | None, node: str | None, *, dry_run: bool, as_json: bool) -> int:
    """Update the selected nodes; exit 0 when none failed (held reboots included), else 1."""
    inv = load_inventory(find_inventory(config))
    host_update = prepare_host_update(inv, node, dry_run=dry_run)
    # A host update reboots its nodes: every run on a guest of theirs waits, and holds it off.
    claims = node_claims(host_update.nodes)
    summary = run_job(inv, "update host", host_update.work, dry_run=dry_run, claims=claims)
    if not as_json:
        for name, upgrades in host_update.upgrades.items():
            print(f"{name}: {plural(len(upgrades), 'upgrade')}" + (":" if upgrades else ""))
            for upgrade in upgrades:
                print(f"  {upgrade}")
    report(summary.outcomes, as_json=as_json, dry_run=dry_run, title="update host")
    sys.stdout.flush()
    # Only now, with the run journaled and reported: this node's own reboot.
    held = host_update.reboot_self()
    if held is not None:
        # A held reboot is not a failure (the interface's exit 0), but say it.
        print(f"nixmox: {held}", file=sys.stderr)
    return summary.exit_code
