"""`nixmox snapshot [--dry-run] [--monitor]`."""

from __future__ import annotations

import json
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nixmox.adapters.runner import Runner
from nixmox.adapters.zfs import Zfs
from nixmox.core.errors import ConfigError
from nixmox.core.tables import print_table
from nixmox.core.zones import zone
from nixmox.inventory.load import find_inventory, load_inventory
from nixmox.inventory.model import Inventory, Snapshots
from nixmox.rules.timespan import parse_timedelta
from nixmox.runtime.run import observed_run
from nixmox.snapshot.job import Freshness, TreeResult, check_freshness, run_target
from nixmox.snapshot.policy import human

NAGIOS = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}


def _snapshots(inv: Inventory) -> Snapshots:
    if inv.snapshots is None or not inv.snapshots.datasets:
        raise ConfigError("the inventory declares no [[snapshots.datasets]]: nothing to snapshot")
    return inv.snapshots


def run(config: Path | None, *, dry_run: bool, monitor: bool, as_json: bool) -> int:
    """Run the snapshot job (or its --monitor check); return the exit code."""
    inv = load_inventory(find_inventory(config))
    snaps = _snapshots(inv)
    runner = Runner(dry_run=dry_run)
    zfs = Zfs(runner, inv.zfs.command)
    now = datetime.now(UTC)
    if monitor:
        return _monitor(zfs, snaps, now, as_json=as_json)
    tz = zone(inv.timezone)

    def run_all() -> list[TreeResult]:
        return [run_target(zfs, t, snaps.policies[t.policy], tz, now) for t in snaps.datasets]

    if dry_run:
        results = run_all()
        commands = [shlex.join(r.argv) for r in runner.history if r.skipped]
        if as_json:
            print(
                json.dumps(
                    {
                        "dry_run": True,
                        "commands": commands,
                        "targets": [_as_json(r) for r in results],
                    },
                    indent=2,
                )
            )
        else:
            print("\n".join(commands) if commands else "# nothing to do")
        return 0 if all(r.error is None for r in results) else 1

    with observed_run(inv, "snapshot") as journal:
        results = run_all()
        journal.summary = {
            "targets": [_as_json(r) for r in results],
            "zfs_calls": len(runner.history),
        }
        journal.result = "ok" if all(r.ok for r in results) else "failed"
    if as_json:
        print(json.dumps({"targets": [_as_json(r) for r in results]}, indent=2))
    else:
        _print(results)
    return 0 if all(r.ok for r in results) else 1


def _as_json(result: TreeResult) -> dict[str, Any]:
    return {
        "dataset": result.dataset,
        "policy": result.policy,
        "recursive": result.recursive,
        "taken": result.taken,
        "error": result.error,
        "ok": result.ok,
        "datasets": [
            {
                "dataset": d.dataset,
                "kept": d.kept,
                "held": d.held,
                "removed": d.removed,
                "failed": d.failed,
            }
            for d in result.datasets
        ],
    }


def _print(results: list[TreeResult]) -> None:
    rows = [("dataset", "snapshot", "kept", "held", "removed", "result")]
    for tree in results:
        if tree.error is not None:
            rows.append((tree.dataset, "-", "-", "-", "-", f"FAILED: {tree.error}"))
            continue
        for d in tree.datasets:
            outcome = "ok" if not d.failed else "FAILED: " + "; ".join(d.failed)
            rows.append(
                (
                    d.dataset,
                    tree.taken or "-",
                    str(d.kept),
                    str(d.held),
                    str(len(d.removed)),
                    outcome,
                )
            )
    print_table(rows)
    failed = sum(not r.ok for r in results)
    print(
        f"{len(results) - failed} of {len(results)} snapshot targets ok"
        + (f", {failed} failed" if failed else "")
    )


def _span(text: str | None) -> timedelta | None:
    return None if text is None else parse_timedelta(text)


def _monitor(zfs: Zfs, snaps: Snapshots, now: datetime, *, as_json: bool) -> int:
    checks: list[Freshness] = []
    for target in snaps.datasets:
        policy = snaps.policies[target.policy]
        checks.append(
            check_freshness(
                zfs, target, policy, now, _span(policy.warn_after), _span(policy.crit_after)
            )
        )
    # UNKNOWN only when nothing worse is known, as for doctor.
    worst = max((c.status for c in checks if c.status != 3), default=0)
    if worst == 0 and any(c.status == 3 for c in checks):
        worst = 3
    if as_json:
        print(
            json.dumps(
                {
                    "status": NAGIOS[worst],
                    "exit_code": worst,
                    "datasets": [
                        {
                            "dataset": c.dataset,
                            "status": NAGIOS[c.status],
                            "message": c.message,
                            "age_seconds": None if c.age is None else int(c.age.total_seconds()),
                            "warn_seconds": int(c.warn.total_seconds()),
                            "crit_seconds": int(c.crit.total_seconds()),
                        }
                        for c in checks
                    ],
                },
                indent=2,
            )
        )
        return worst
    bad = [c for c in checks if c.status == worst and worst != 0]
    headline = "; ".join(f"{c.dataset}: {c.message}" for c in bad) or (
        f"{len(checks)} datasets fresh"
    )
    perf = " ".join(
        f"'{c.dataset}'={int(c.age.total_seconds())}s;{int(c.warn.total_seconds())};"
        f"{int(c.crit.total_seconds())}"
        for c in checks
        if c.age is not None
    )
    print(f"NIXMOX SNAPSHOT {NAGIOS[worst]} - {headline}" + (f" | {perf}" if perf else ""))
    for c in checks:
        age = "-" if c.age is None else human(c.age)
        print(f"{NAGIOS[c.status]}: {c.dataset}: {c.message} (age {age})")
    return worst
