"""`nixmox restore GUEST` and `nixmox rebuild`: parse, run the job, print."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

from nixmox.backup.archives import human_size
from nixmox.cli.prompt import confirmer
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.progress import for_stderr
from nixmox.core.tables import print_table
from nixmox.core.words import plural
from nixmox.inventory.load import find_inventory, load_inventory
from nixmox.restore.choose import Candidate, human_age
from nixmox.restore.job import RestoreResult
from nixmox.restore.rebuild import RebuildSummary, describe, prepare_rebuild
from nixmox.restore.runs import prepare_restore
from nixmox.runtime.run import run_job


def restore(
    config: Path | None,
    guest: str,
    *,
    at: str | None,
    archive: str | None,
    as_vmid: int | None,
    list_only: bool,
    yes: bool,
    dry_run: bool,
    as_json: bool,
    clock: Clock = SYSTEM_CLOCK,
) -> int:
    """Restore one guest (or list its archives); exit 0 ok, 1 failed."""
    inv = load_inventory(find_inventory(config))
    run = prepare_restore(
        inv,
        guest,
        at=at,
        archive=archive,
        as_vmid=as_vmid,
        dry_run=dry_run,
        list_only=list_only,
        clock=clock,
    )
    now = clock.now()
    if list_only:
        _print_candidates(run.found, run.chosen, now, as_json)
        return 0
    if run.chosen is None:
        what = f"taken at or before {at}" if at else archive or "at all"
        print(f"nixmox: no archive of {run.guest.name} {what}", file=sys.stderr)
        return 1
    shown = for_stderr(clock)
    work = run.work(confirmer(yes), shown)
    summary = run_job(inv, "restore", work, dry_run=dry_run, claims=run.claims, progress=shown)
    result = summary.restore
    if as_json:
        print(json.dumps({"dry_run": dry_run, **summary.to_json()}, indent=2))
    else:
        _print_result(result, now, dry_run)
    return 0 if result.ok else 1


def _print_candidates(
    found: list[Candidate], chosen: Candidate | None, now: datetime, as_json: bool
) -> None:
    if as_json:
        rows = [
            {
                "archive": c.archive.volid,
                "time": c.archive.time.isoformat(),
                "age_seconds": int((now - c.archive.time).total_seconds()),
                "size": c.archive.size,
                "protected": c.archive.protected,
                "verified": None
                if c.verification is None
                else {
                    "ok": c.verification.ok,
                    "when": c.verification.when.isoformat(),
                    "seconds": round(c.verification.seconds, 1),
                },
                "chosen": c is chosen,
            }
            for c in found
        ]
        print(json.dumps({"archives": rows}, indent=2))
        return
    table = [("", "archive", "taken", "age", "size", "last verification")]
    for c in found:
        v = c.verification
        checked = (
            "never" if v is None else f"{'ok' if v.ok else 'FAILED'} {human_age(now - v.when)} ago"
        )
        table.append(
            (
                "*" if c is chosen else "",
                c.archive.volid + (" (protected)" if c.archive.protected else ""),
                c.archive.time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                human_age(now - c.archive.time),
                human_size(c.archive.size),
                checked,
            )
        )
    print_table(table)
    print(f"{plural(len(found), 'archive')}; * the one restore takes")


def _print_result(r: RestoreResult, now: datetime, dry_run: bool) -> None:
    if dry_run:
        print(f"restore {r.guest} {r.mode} to {r.target} from {r.archive}; would make:")
        for call in r.calls:
            print(f"  {call}")
        print("steps: " + ", ".join(s.name for s in r.steps))
        return
    rows = [("step", "result", "time", "detail")]
    rows += [(s.name, s.result, f"{s.seconds:.1f} s", s.detail) for s in r.steps]
    print_table(rows)
    age = human_age(now - r.archive_time) if r.archive_time else "-"
    if r.kept:
        print(f"what was there is kept as {r.kept} (restore it with --archive {r.kept})")
    if r.removed:
        print(f"removed from the copy before it started: {', '.join(r.removed)}")
    state = "OK" if r.ok else "FAILED"
    print(f"{state} {r.guest} {r.mode} ({r.target}) from {r.archive} (data age {age}): {r.message}")


def rebuild(
    config: Path | None,
    *,
    verified: bool,
    replace: bool,
    yes: bool,
    dry_run: bool,
    host_root: Path,
    as_json: bool,
    clock: Clock = SYSTEM_CLOCK,
) -> int:
    """Plan and run the whole recovery; exit 0 when every guest is back and plan is empty."""
    inv = load_inventory(find_inventory(config))
    run = prepare_rebuild(
        inv, verified=verified, replace=replace, dry_run=dry_run, host_root=host_root, clock=clock
    )
    now = clock.now()
    if not as_json:
        print("rebuild plan:")
        for change in run.infrastructure_changes:
            print(f"  infrastructure: {change}")
        for r in run.guests:
            print(f"  {r.name} ({r.vmid}): {describe(r, now)}")
        missing = [r.name for r in run.guests if r.action == "create"]
        if missing:
            print(f"WARNING: no archive of {', '.join(missing)}: created empty from the template")
    shown = for_stderr(clock)
    work = run.work(confirmer(yes), shown)
    summary = run_job(inv, "rebuild", work, dry_run=dry_run, claims=run.claims, progress=shown)
    if as_json:
        doc = {"dry_run": dry_run, **summary.to_json()}
        if dry_run:
            doc["calls"] = list(summary.calls) + [
                c for _, res in summary.guests if res is not None for c in res.calls
            ]
        print(json.dumps(doc, indent=2))
    else:
        _print_rebuild(summary, dry_run)
    return 0 if summary.result == "ok" else 1


def _print_rebuild(summary: RebuildSummary, dry_run: bool) -> None:
    now = summary.now
    if dry_run:
        print("would make:")
        for call in summary.calls:
            print(f"  {call}")
        for _, res in summary.guests:
            for call in res.calls if res is not None else ():
                print(f"  {call}")
        return
    for o in summary.infrastructure:
        print(f"{o.result.upper():6} {o.kind} {o.name}" + (f": {o.error}" if o.error else ""))
    rows = [("guest", "action", "archive", "data age", "time", "health")]
    for r, res in summary.guests:
        age = human_age(now - r.archive_time) if now and r.archive_time else "-"
        if res is None:
            health, took = r.note, "-"
        else:
            health = res.health if res.ok else f"FAILED: {res.message}"
            took = f"{res.seconds:.1f} s"
        rows.append((r.name, r.action, r.archive or "-", age, took, health))
    print_table(rows)
    if summary.plan_empty:
        print("plan: empty (the server matches the inventory)")
    else:
        print("plan: NOT empty: " + "; ".join(summary.plan_left) + " (see `nixmox plan`)")
    failed = summary.failed
    print(
        f"{len(summary.guests) - len(failed)} of {len(summary.guests)} guests ok"
        + (f", failed: {', '.join(failed)}" if failed else "")
    )
