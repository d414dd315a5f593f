"""`nixmox snapshot [--dry-run] [--monitor]` and `snapshot list|clone|rollback`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nixmox.cli.prompt import confirmer
from nixmox.core.progress import SILENT, for_stderr
from nixmox.core.tables import print_table
from nixmox.core.words import plural
from nixmox.inventory.load import find_inventory, load_inventory
from nixmox.runtime.run import run_job
from nixmox.snapshot.job import TreeResult
from nixmox.snapshot.runs import (
    MonitorReport,
    prepare_browse,
    prepare_rollback,
    prepare_snapshot,
    recovery_claims,
    snapshot_claims,
    snapshot_rows,
    target_row,
)
from nixmox.snapshot.runs import monitor as freshness_report

NAGIOS = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}


def run(config: Path | None, *, dry_run: bool, monitor: bool, as_json: bool) -> int:
    """Run the snapshot job (or its --monitor check); return the exit code."""
    inv = load_inventory(find_inventory(config))
    if monitor:
        return _monitor(freshness_report(inv, dry_run=dry_run), as_json=as_json)
    # A dry run only lists commands: nothing to follow, and its stderr stays the reasons.
    shown = SILENT if dry_run else for_stderr()
    work = prepare_snapshot(inv, dry_run=dry_run, progress=shown)
    claims = snapshot_claims(inv)
    summary = run_job(inv, "snapshot", work, dry_run=dry_run, claims=claims, progress=shown)
    targets = [target_row(r) for r in summary.targets]
    if dry_run:
        commands = list(summary.commands)
        if as_json:
            doc = {"dry_run": True, "commands": commands, "targets": targets}
            print(json.dumps(doc, indent=2))
        else:
            print("\n".join(commands) if commands else "# nothing to do")
            # Without the reason, a failed target is only an exit code.
            for r in summary.targets:
                if r.error is not None:
                    print(f"nixmox: {r.dataset}: {r.error}", file=sys.stderr)
        return 0 if all(r.error is None for r in summary.targets) else 1
    if as_json:
        print(json.dumps({"targets": targets}, indent=2))
    else:
        _print(list(summary.targets))
    return 0 if summary.ok else 1


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
        f"{len(results) - failed} of {plural(len(results), 'snapshot target')} ok"
        + (f", {failed} failed" if failed else "")
    )


def _monitor(report: MonitorReport, *, as_json: bool) -> int:
    checks, worst = report.checks, report.worst
    if as_json:
        datasets = [
            {
                "dataset": c.dataset,
                "status": NAGIOS[c.status],
                "message": c.message,
                "age_seconds": None if c.age is None else int(c.age.total_seconds()),
                "warn_seconds": int(c.warn.total_seconds()),
                "crit_seconds": int(c.crit.total_seconds()),
            }
            for c in checks
        ]
        doc = {"status": NAGIOS[worst], "exit_code": worst, "datasets": datasets}
        print(json.dumps(doc, indent=2))
        return worst
    bad = [c for c in checks if c.status == worst and worst != 0]
    headline = "; ".join(f"{c.dataset}: {c.message}" for c in bad) or (
        f"{plural(len(checks), 'dataset')} fresh"
    )
    perf = " ".join(
        f"'{c.dataset}'={int(c.age.total_seconds())}s;{int(c.warn.total_seconds())};"
        f"{int(c.crit.total_seconds())}"
        for c in checks
        if c.age is not None
    )
    print(f"NIXMOX SNAPSHOT {NAGIOS[worst]} - {headline}" + (f" | {perf}" if perf else ""))
    for c in checks:
        # The message says the age already ("newest snapshot 2 h old ...").
        print(f"{NAGIOS[c.status]}: {c.dataset}: {c.message}")
    return worst


def list_(config: Path | None, dataset: str | None, *, as_json: bool) -> int:
    """``snapshot list``: every snapshot with its holds."""
    inv = load_inventory(find_inventory(config))
    rows = snapshot_rows(inv, dataset)
    if as_json:
        doc = [
            {
                "snapshot": r.full,
                "dataset": r.dataset,
                "name": r.name,
                "holds": r.holds,
                "nixmox": r.ours,
            }
            for r in rows
        ]
        print(json.dumps({"snapshots": doc}, indent=2))
        return 0
    table = [("snapshot", "by", "holds")]
    table += [(r.full, "nixmox" if r.ours else "other", str(r.holds)) for r in rows]
    print_table(table)
    return 0


def clone(
    config: Path | None,
    snapshot: str,
    *,
    mountpoint: str | None,
    remove: bool,
    dry_run: bool,
    as_json: bool,
) -> int:
    """``snapshot clone``: a read-only mount of a snapshot, or its removal."""
    inv = load_inventory(find_inventory(config))
    work = prepare_browse(inv, snapshot, mountpoint=mountpoint, remove=remove, dry_run=dry_run)
    claims = recovery_claims(inv, snapshot)
    summary = run_job(inv, "snapshot clone", work, dry_run=dry_run, claims=claims)
    if as_json:
        print(json.dumps({"dry_run": dry_run, **summary.to_json()}, indent=2))
    elif summary.removed:
        print(f"removed {summary.clone}")
    else:
        print(f"{snapshot} is mounted read-only at {summary.mountpoint} (clone {summary.clone})")
        print(f"remove it with: nixmox snapshot clone --remove {snapshot}")
    return 0


def rollback(
    config: Path | None,
    snapshot: str,
    destroy_later: list[str],
    *,
    stop: bool,
    yes: bool,
    dry_run: bool,
    as_json: bool,
) -> int:
    """``snapshot rollback``: guarded, asked for, journaled."""
    inv = load_inventory(find_inventory(config))
    work = prepare_rollback(inv, snapshot, destroy_later, stop=stop, dry_run=dry_run)
    question = f"Roll back to {snapshot} (what is there now is copied aside first)?"
    if not dry_run and not confirmer(yes)(
        question, "refusing to roll back without --yes (no terminal to ask)"
    ):
        return 1
    claims = recovery_claims(inv, snapshot)
    result = run_job(inv, "snapshot rollback", work, dry_run=dry_run, claims=claims)
    if as_json:
        print(
            json.dumps(
                {"dry_run": dry_run, **result.to_json(), "commands": result.commands}, indent=2
            )
        )
    elif dry_run:
        print("\n".join(result.commands))
    else:
        print(result.message)
        if result.destroyed:
            print(f"destroyed: {', '.join(result.destroyed)}")
    return 0 if result.ok else 1
