"""`nixmox update nixos`: run (or plan) each guest's transaction, report."""

from __future__ import annotations

from pathlib import Path

from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.inventory.load import find_inventory, load_inventory
from nixmox.runtime.run import run_job
from nixmox.updates.outcome import report
from nixmox.updates.runs import nixos_claims, prepare_nixos_update


def run(
    config: Path | None,
    names: list[str],
    *,
    dry_run: bool,
    as_json: bool,
    verbose: int,
    clock: Clock = SYSTEM_CLOCK,
) -> int:
    """Update (or with ``dry_run`` plan) the NixOS guests; exit 0 ok, 1 failed or rolled back."""
    inv = load_inventory(find_inventory(config))
    work = prepare_nixos_update(inv, names, dry_run=dry_run, clock=clock)
    summary = run_job(
        inv, "update nixos", work, dry_run=dry_run, claims=nixos_claims(inv, names), clock=clock
    )
    report(summary.outcomes, as_json=as_json, dry_run=dry_run, title="update nixos")
    if not as_json and (dry_run or verbose > 0):
        for o in summary.outcomes:
            print(f"\n{o.guest}:")
            for step in o.steps:
                print(f"  {step}")
    return 0 if dry_run else summary.exit_code
