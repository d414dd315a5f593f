"""`nixmox backup` and `nixmox backup verify`: parse, run the job, print."""

from __future__ import annotations

import json
from pathlib import Path

from nixmox.backup.archives import human_size
from nixmox.backup.runs import BackupSummary, prepare_backup, prepare_verify
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.tables import print_table
from nixmox.core.words import plural
from nixmox.inventory.load import find_inventory, load_inventory
from nixmox.runtime.run import run_job


def backup(
    config: Path | None,
    names: list[str],
    *,
    dry_run: bool,
    protected: bool,
    as_json: bool,
    clock: Clock = SYSTEM_CLOCK,
) -> int:
    """Back up and prune; exit 0 if every guest succeeded, 1 otherwise."""
    inv = load_inventory(find_inventory(config))
    work = prepare_backup(inv, names, protected=protected, dry_run=dry_run, clock=clock)
    summary = run_job(inv, "backup", work, dry_run=dry_run)
    if as_json:
        print(json.dumps({"dry_run": dry_run, **summary.to_json()}, indent=2))
    else:
        _print(summary, dry_run)
    return 0 if summary.result == "ok" else 1


def _print(summary: BackupSummary, dry_run: bool) -> None:
    results = summary.guests
    rows = [("guest", "result", "size", "time", "kept", "removed")]
    for r in results:
        state = r.result.upper() if not r.errors else "ok, prune errors"
        rows.append(
            (
                r.name,
                state,
                human_size(r.size) if r.size else "-",
                f"{r.seconds:.0f} s" if r.seconds else "-",
                str(r.kept),
                str(len(r.removed)),
            )
        )
    print_table(rows)
    for r in results:
        if r.message and r.result != "ok":
            print(f"{r.name}: {r.message}")
        for volid in r.removed:
            print(f"{r.name}: {'would remove' if dry_run else 'removed'} {volid}")
        for error in r.errors:
            print(f"{r.name}: {error}")
    failed = [r for r in results if not r.ok]
    verb = "planned" if dry_run else "backed up"
    print(
        f"{len(results) - len(failed)} of {plural(len(results), 'guest')} {verb}"
        + (f", {len(failed)} failed" if failed else "")
    )


def verify(config: Path | None, names: list[str], *, as_json: bool) -> int:
    """Restore-verify each guest's newest archive; exit 1 on any failure."""
    inv = load_inventory(find_inventory(config))
    summary = run_job(inv, "backup verify", prepare_verify(inv, names), dry_run=False)
    if as_json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        for r in summary.guests:
            mark = "OK    " if r.ok else "FAILED"
            print(f"{mark} {r.name}: {r.archive or '-'} -> scratch {r.scratch or '-'}: {r.message}")
    return 0 if summary.result == "ok" else 1
