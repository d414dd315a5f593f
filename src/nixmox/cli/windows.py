"""`nixmox windows provision`."""

from __future__ import annotations

import json
from pathlib import Path

from nixmox.adapters.locks import guest_claims
from nixmox.core.tables import print_table
from nixmox.inventory.load import find_inventory, load_inventory
from nixmox.inventory.model import Guest
from nixmox.runtime.run import run_job
from nixmox.windows.provision_plan import StepResult, exit_code
from nixmox.windows.provision_run import prepare_provision


def provision(config: Path | None, name: str, *, dry_run: bool, as_json: bool) -> int:
    """Provision one Windows guest; exit 0 when every step is ok, 1 otherwise."""
    inv = load_inventory(find_inventory(config))
    guest, work = prepare_provision(inv, name, dry_run=dry_run)
    claims = guest_claims([(guest.vmid, guest.node)])
    summary = run_job(inv, "windows provision", work, dry_run=dry_run, claims=claims)
    results = list(summary.guests[0].steps)
    if as_json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        _print(guest, results, dry_run)
    return exit_code(results)


def _print(guest: Guest, results: list[StepResult], dry_run: bool) -> None:
    rows = [("step", "result", "detail")]
    rows += [(r.step, r.outcome.upper(), r.detail) for r in results]
    print_table(rows)
    failed = [r.step for r in results if not r.ok or r.skipped]
    pending = [r.step for r in results if r.pending]
    reboot = any(r.reboot for r in results)
    verb = "checked (dry run)" if dry_run else "provisioned"
    line = f"{guest.name} ({guest.vmid}): {verb}"
    if failed:
        line += f", failed: {', '.join(failed)}"
    if pending:
        line += f", left to the user: {', '.join(pending)}"
    if reboot:
        line += ", reboot needed"
    print(line)
