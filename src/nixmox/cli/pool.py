"""`nixmox pool scrub|trim|check [--pool NAME]`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nixmox.core.tables import print_table
from nixmox.inventory.load import find_inventory, load_inventory
from nixmox.pool.runs import HealthReport, OperationSummary, prepare_check, prepare_operation
from nixmox.runtime.run import run_job


def operation(
    config: Path | None, what: str, pool: str | None, *, dry_run: bool, as_json: bool
) -> int:
    """Scrub or trim; exit 0 when every pool finished, 1 otherwise."""
    inv = load_inventory(find_inventory(config))
    out = sys.stderr if as_json else sys.stdout

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    work = prepare_operation(inv, what, pool, dry_run=dry_run, say=say)
    # A scrub can take a day: it claims nothing but its own job's lock (runs are locked by
    # what they touch), so snapshots, backups and updates go on beside it.
    summary = run_job(inv, f"pool {what}", work, dry_run=dry_run)
    if as_json:
        print(json.dumps({"dry_run": dry_run, **summary.to_json()}, indent=2))
    else:
        _print_operation(summary)
    return 0 if summary.ok else 1


def _print_operation(summary: OperationSummary) -> None:
    rows = [("pool", summary.operation, "repaired", "errors", "pauses", "result")]
    for p in summary.pools:
        rows.append((p.pool, p.outcome, f"{p.repaired} B", str(p.errors), str(p.pauses), p.message))
    print_table(rows)
    for p in summary.pools:
        for v in p.vdevs:
            counts = (v["read"], v["write"], v["checksum"])
            if any(counts) or v["repaired"]:
                print(
                    f"{p.pool}/{v['name']}: {counts[0]} read, {counts[1]} write, "
                    f"{counts[2]} checksum errors, {v['repaired']} B repaired"
                )


def check(config: Path | None, pool: str | None, *, as_json: bool) -> int:
    """Read and judge the pools and disks, journal it; exit 0, or 1 when a pool
    could not be read (the verdicts are doctor's business: `doctor --only pools`)."""
    inv = load_inventory(find_inventory(config))
    report = run_job(inv, "pool check", prepare_check(inv, pool), dry_run=False)
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        _print_health(report)
    return 0 if report.result == "ok" else 1


def _print_health(report: HealthReport) -> None:
    from nixmox.cli.doctor import _print

    _print(list(report.checks))
