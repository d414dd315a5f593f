"""`nixmox update windows [--guest NAME]... [--dry-run] [--json]`."""

from __future__ import annotations

import logging
from pathlib import Path

from nixmox.core.clock import Clock
from nixmox.inventory.load import find_inventory, load_inventory
from nixmox.runtime.run import run_job
from nixmox.updates.outcome import report
from nixmox.windows.update import Timing
from nixmox.windows.update_run import prepare_windows_update, windows_claims


def run(
    config: Path | None,
    names: list[str],
    *,
    dry_run: bool,
    as_json: bool,
    clock: Clock | None = None,
    timing: Timing | None = None,
) -> int:
    """Update the Windows guests; exit 0 unless one failed or was rolled back."""
    inv = load_inventory(find_inventory(config))
    work = prepare_windows_update(inv, names, dry_run=dry_run, clock=clock, timing=timing)
    claims = windows_claims(inv, names)
    summary = run_job(inv, "update windows", work, dry_run=dry_run, claims=claims)
    report(summary.outcomes, as_json=as_json, dry_run=dry_run, title="update windows")
    if not as_json and (dry_run or logging.getLogger("nixmox").isEnabledFor(logging.DEBUG)):
        # The plan (what would be installed) always; every step with -v.
        for o in summary.outcomes:
            for step in o.steps:
                print(f"{o.guest}: {step}")
    return summary.exit_code
