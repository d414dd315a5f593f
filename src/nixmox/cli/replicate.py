"""`nixmox replicate [--dataset NAME] [--discard NAME]... [--dry-run]`."""

from __future__ import annotations

import json
from pathlib import Path

from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.progress import for_stderr
from nixmox.core.tables import print_table
from nixmox.inventory.load import find_inventory, load_inventory
from nixmox.replicate.runs import ReplicateSummary, prepare_replicate, replicate_claims
from nixmox.runtime.run import run_job
from nixmox.snapshot.policy import human


def size(count: float) -> str:
    """Bytes as people read them: ``512 B``, ``3.2 MiB``."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def run(
    config: Path | None,
    *,
    dataset: str | None,
    discard: list[str],
    dry_run: bool,
    as_json: bool,
    clock: Clock = SYSTEM_CLOCK,
) -> int:
    """Run the replicate job; return the exit code (1 when any dataset failed)."""
    inv = load_inventory(find_inventory(config))
    shown = for_stderr(clock)
    work = prepare_replicate(
        inv, dry_run=dry_run, dataset=dataset, discard=discard, progress=shown, clock=clock
    )
    claims = replicate_claims(inv, dataset)
    summary = run_job(inv, "replicate", work, dry_run=dry_run, claims=claims, progress=shown)
    doc = summary.to_json()
    doc.pop("finished_at", None)
    if dry_run:
        if as_json:
            print(
                json.dumps({"dry_run": True, "commands": list(summary.commands), **doc}, indent=2)
            )
        else:
            print("\n".join(summary.commands) if summary.commands else "# nothing to send")
            _problems(summary)
        return 0 if summary.ok else 1
    if as_json:
        print(json.dumps(doc, indent=2))
    else:
        _print(summary)
    return 0 if summary.ok else 1


def _problems(summary: ReplicateSummary) -> None:
    for entry in summary.entries:
        if entry.error:
            print(f"# {entry.source} -> {entry.target}: {entry.error}")
        for d in entry.datasets:
            if d.error:
                print(f"# {d.dataset}: {d.error}" + (f"\n#   fix: {d.fix}" if d.fix else ""))


def _print(summary: ReplicateSummary) -> None:
    rows = [("dataset", "replica", "sent", "bytes", "rate", "pruned", "lag", "result")]
    fixes: list[str] = []
    for entry in summary.entries:
        if entry.error is not None:
            rows.append(
                (entry.source, entry.target, "-", "-", "-", "-", "-", f"FAILED: {entry.error}")
            )
            continue
        for d in entry.datasets:
            lag = "-" if d.lag_seconds is None else human_seconds(d.lag_seconds)
            outcome = "ok" if d.ok else "FAILED: " + (d.error or "; ".join(d.prune_failed))
            rows.append(
                (
                    d.dataset,
                    f"{entry.target}:{d.replica}",
                    f"{len(d.sent)} ({d.kind})" if d.sent else d.kind or "-",
                    size(d.bytes),
                    f"{size(d.rate)}/s" if d.bytes else "-",
                    str(len(d.pruned)),
                    lag,
                    outcome,
                )
            )
            if d.fix:
                fixes.append(f"{d.dataset}: {d.fix}")
    print_table(rows)
    for entry in summary.entries:
        if entry.features is not None:
            on = [k for k, v in entry.features.to_json().items() if v] or ["none"]
            used = sorted({u for d in entry.datasets for u in d.used}) or ["none"]
            print(
                f"{entry.source} -> {entry.target} ({entry.where}): ZFS features "
                f"{', '.join(on)}; used {', '.join(used)}"
            )
    for fix in fixes:
        print(f"fix: {fix}")
    datasets = [d for _, d in summary.datasets()]
    failed = sum(not d.ok for d in datasets)
    # An entry that failed before any dataset (target unreachable) has none to count.
    unreached = [f"{e.source} -> {e.target}" for e in summary.entries if e.error is not None]
    print(
        f"{len(datasets) - failed} of {len(datasets)} datasets ok"
        + (f", {failed} failed" if failed else "")
        + (f"; not reached: {', '.join(unreached)}" if unreached else "")
    )


def human_seconds(seconds: float) -> str:
    """A lag as an age (``5 h``)."""
    from datetime import timedelta

    return human(timedelta(seconds=seconds))
