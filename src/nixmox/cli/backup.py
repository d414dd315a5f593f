"""`nixmox backup` and `nixmox backup verify`: parse, run the job, print."""

from __future__ import annotations

import json
from pathlib import Path

from nixmox.backup.archives import human_size
from nixmox.backup.runs import BackupSummary, backup_claims, prepare_backup, prepare_verify
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.progress import Progress, for_stderr
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
    progress: Progress | None = None,
) -> int:
    """Back up and prune; exit 0 if every guest succeeded, 1 otherwise."""
    inv = load_inventory(find_inventory(config))
    shown = progress or for_stderr(clock)
    work = prepare_backup(
        inv, names, protected=protected, dry_run=dry_run, clock=clock, progress=shown
    )
    claims = backup_claims(inv, names)
    summary = run_job(
        inv, "backup", work, dry_run=dry_run, claims=claims, clock=clock, progress=shown
    )
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
    # Skipped (a template, or not started after Ctrl-C) is not backed up: say so.
    skipped = [r for r in results if r.ok and r.result == "skipped"]
    verb = "planned" if dry_run else "backed up"
    print(
        f"{len(results) - len(failed) - len(skipped)} of {plural(len(results), 'guest')} {verb}"
        + (f", {len(skipped)} skipped" if skipped else "")
        + (f", {len(failed)} failed" if failed else "")
    )


def verify(
    config: Path | None, names: list[str], *, as_json: bool, clock: Clock = SYSTEM_CLOCK
) -> int:
    """Restore-verify each guest's newest archive; exit 1 on any failure."""
    inv = load_inventory(find_inventory(config))
    shown = for_stderr(clock)
    work = prepare_verify(inv, names, clock=clock, progress=shown)
    claims = backup_claims(inv, names)
    summary = run_job(
        inv, "backup verify", work, dry_run=False, claims=claims, clock=clock, progress=shown
    )
    if as_json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        for s in summary.leftovers:
            word = {"removed": "CLEANED", "unconfirmed": "LEFT"}.get(s.outcome, "NOTE")
            print(f"{word:<6} left by an earlier run ({s.guest}): {s.message}")
        for r in summary.guests:
            mark = "OK    " if r.ok else "FAILED"
            print(f"{mark} {r.name}: {r.archive or '-'} -> scratch {r.scratch or '-'}: {r.message}")
    return 0 if summary.result == "ok" else 1
