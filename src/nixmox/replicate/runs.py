"""A ``replicate`` run as the CLI starts it, and what the journal keeps of it.

:func:`prepare_replicate` checks the inventory and returns the work for
:func:`nixmox.runtime.run.run_job`; :class:`ReplicateSummary` is the journal's
summary (``history``, ``status`` and the metrics read it back).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from nixmox.adapters.locks import Claim, dataset_claims
from nixmox.adapters.runner import Remote, Runner
from nixmox.adapters.zfs import Zfs, ZfsError, Zpool, zpool_command
from nixmox.backup.archives import human_size
from nixmox.core import interrupt, jsonrows
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.errors import ConfigError
from nixmox.core.progress import SILENT, Progress
from nixmox.core.results import AllPartsOk
from nixmox.core.words import plural
from nixmox.core.zones import zone
from nixmox.inventory.model import Inventory, Replication, ReplicationSource, ReplicationTarget
from nixmox.replicate.job import (
    Context,
    DatasetResult,
    Features,
    detect,
    replicas,
    replicate_dataset,
    tree,
)
from nixmox.replicate.plan import Discard, replica_name


def replication_settings(inv: Inventory) -> Replication:
    """``[replication]``, refused when it declares no dataset."""
    if inv.replication is None or not inv.replication.datasets:
        raise ConfigError(
            "the inventory declares no [[replication.datasets]]: nothing to replicate"
        )
    return inv.replication


def dataset_row(r: DatasetResult) -> dict[str, Any]:
    """One dataset's result as JSON (journal and ``--json``): its fields, then ``ok``."""
    return {**asdict(r), "seconds": round(r.seconds, 3), "ok": r.ok}


def _dataset_from_json(row: Mapping[str, Any]) -> DatasetResult:
    return jsonrows.record(DatasetResult, row)


@dataclass(frozen=True)
class TargetResult:
    """One declared source entry (dataset or tree) to one target."""

    source: str
    target: str
    where: str  # the target's host, or "local"
    features: Features | None
    datasets: tuple[DatasetResult, ...]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(d.ok for d in self.datasets)


@dataclass(frozen=True)
class ReplicateSummary(AllPartsOk):
    """A ``replicate`` run; with ``--dry-run``, the commands it would run."""

    entries: tuple[TargetResult, ...]
    finished_at: float = 0.0  # UNIX time the run ended (lag is measured from it)
    commands: tuple[str, ...] = ()  # skipped by a dry run; not journaled

    def parts(self) -> Iterable[TargetResult]:
        return self.entries

    def datasets(self) -> Iterable[tuple[TargetResult, DatasetResult]]:
        for entry in self.entries:
            for d in entry.datasets:
                yield entry, d

    def to_json(self) -> dict[str, Any]:
        return {
            "finished_at": self.finished_at,
            "entries": [
                {
                    "source": e.source,
                    "target": e.target,
                    "where": e.where,
                    "features": e.features.to_json() if e.features else None,
                    "error": e.error,
                    "ok": e.ok,
                    "datasets": [dataset_row(d) for d in e.datasets],
                }
                for e in self.entries
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReplicateSummary:
        entries = []
        for e in jsonrows.rows(data, "entries"):
            feats = e.get("features")
            entries.append(
                TargetResult(
                    source=jsonrows.text(e, "source"),
                    target=jsonrows.text(e, "target"),
                    where=jsonrows.text(e, "where"),
                    features=Features(
                        bool(feats.get("resume")),
                        bool(feats.get("bookmarks")),
                        bool(feats.get("raw")),
                    )
                    if isinstance(feats, Mapping)
                    else None,
                    datasets=tuple(_dataset_from_json(d) for d in jsonrows.rows(e, "datasets")),
                    error=jsonrows.optional_text(e, "error"),
                )
            )
        at = data.get("finished_at")
        return cls(tuple(entries), float(at) if isinstance(at, int | float) else 0.0)


def target_zfs(runner: Runner, target: ReplicationTarget) -> tuple[Zfs, Zpool]:
    """The target's zfs and zpool: on its host over ssh, or here."""
    bound = runner.on(Remote.to(target.host)) if target.host else runner
    return (
        Zfs(bound, target.zfs_command),
        Zpool(bound, zpool_command(target.zfs_command, target.zpool_command)),
    )


def selected(rep: Replication, dataset: str | None) -> list[ReplicationSource]:
    """The declared entries to run: all, or the one ``--dataset`` names (or contains)."""
    if dataset is None:
        return list(rep.datasets)
    chosen = [
        s
        for s in rep.datasets
        if s.dataset == dataset or (s.recursive and dataset.startswith(s.dataset + "/"))
    ]
    if not chosen:
        known = ", ".join(s.dataset for s in rep.datasets)
        raise ConfigError(f"{dataset} is not replicated by the inventory (declared: {known})")
    return chosen


def replicate_claims(inv: Inventory, dataset: str | None = None) -> list[Claim]:
    """What a ``replicate`` run locks: each source dataset tree it sends (a snapshot run
    pruning it waits, and so does this) and each target dataset (a remote one is named
    ``HOST:DATASET``, its own tree on that host)."""
    rep = replication_settings(inv)
    entries = selected(rep, dataset)
    targets = [rep.targets[e.target] for e in entries]
    named = {t.dataset if not t.host else f"{t.host}:{t.dataset}" for t in targets}
    return dataset_claims([*(e.dataset for e in entries), *sorted(named)])


def prepare_replicate(
    inv: Inventory,
    *,
    dry_run: bool,
    dataset: str | None = None,
    discard: Iterable[str] = (),
    progress: Progress = SILENT,
    clock: Clock = SYSTEM_CLOCK,
) -> Callable[[], ReplicateSummary]:
    """Replicate every declared source (or the one named), ready to run; ``progress``
    hears each dataset's start, its bytes sent so far and its end."""
    rep = replication_settings(inv)
    entries = selected(rep, dataset)
    allowed = Discard(frozenset(discard))
    runner = Runner(dry_run=dry_run)
    source = Zfs(runner, inv.zfs.command)
    source_pool = Zpool(runner, zpool_command(inv.zfs.command, inv.zfs.zpool_command))
    tz = zone(inv.timezone)

    def run() -> ReplicateSummary:
        now = clock.now()
        results = []
        for entry in entries:
            target = rep.targets[entry.target]
            results.append(
                _run_entry(entry, target, runner, source, source_pool, tz, now, allowed, progress)
            )
        skipped = [shlex.join(r.argv) for r in runner.history if r.skipped]
        return ReplicateSummary(tuple(results), clock.now().timestamp(), tuple(skipped))

    return run


def _run_entry(
    entry: ReplicationSource,
    target: ReplicationTarget,
    runner: Runner,
    source: Zfs,
    source_pool: Zpool,
    tz: Any,
    now: datetime,
    allowed: Discard,
    progress: Progress,
) -> TargetResult:
    where = target.host or "local"
    if interrupt.stopping():
        return TargetResult(
            entry.dataset,
            entry.target,
            where,
            None,
            (),
            f"not started: interrupted by {interrupt.signal_name()}",
        )
    target_zfs_, target_pool = target_zfs(runner, target)
    try:
        if not target_zfs_.exists(target.dataset):
            return TargetResult(
                entry.dataset,
                entry.target,
                where,
                None,
                (),
                f"{target.dataset} does not exist on target {entry.target} ({where}): create "
                "it first (nixmox creates only the replicas below it)",
            )
        datasets = tree(source, entry.dataset, entry.recursive)
        features = detect(
            source, source_pool, target_zfs_, target_pool, entry.dataset, target.dataset
        )
    except ZfsError as exc:
        return TargetResult(entry.dataset, entry.target, where, None, (), str(exc))
    ctx = Context(
        entry.target,
        source,
        target_zfs_,
        features,
        target.rule(),
        tz,
        now,
        allowed,
        _sent(progress),
    )
    done: list[DatasetResult] = []
    failed_parents: list[str] = []
    for ds, replica in replicas(entry.dataset, target.dataset, datasets):
        if interrupt.stopping():
            done.append(
                DatasetResult(
                    ds, replica, error=f"skipped: interrupted by {interrupt.signal_name()}"
                )
            )
            continue
        parent = next((p for p in failed_parents if ds.startswith(p + "/")), None)
        if parent is not None:
            # Its parent replica is missing or stale: receiving below it would fail or mislead.
            done.append(DatasetResult(ds, replica, error=f"skipped: {parent} failed"))
            failed_parents.append(ds)
            continue
        progress.start(ds, f"replicating {ds} to {entry.target}:{replica}")
        result = replicate_dataset(ctx, ds, replica)
        progress.end(ds, f"{ds}: {_outcome(result)}")
        if result.error is not None and result.kind in ("", "full", "blocked"):
            failed_parents.append(ds)
        done.append(result)
    return TargetResult(entry.dataset, entry.target, where, features, tuple(done))


def _sent(progress: Progress) -> Callable[[str, int, float], None]:
    def report(dataset: str, moved: int, seconds: float) -> None:
        rate = moved / seconds if seconds > 0 else 0.0
        progress.update(dataset, f"{human_size(moved)} sent, {human_size(int(rate))}/s")

    return report


def _outcome(r: DatasetResult) -> str:
    if r.error is not None:
        return f"FAILED: {r.error}"
    sent = (
        f"sent {plural(len(r.sent), 'snapshot')}, {human_size(r.bytes)}" if r.sent else "up to date"
    )
    return sent + (f", pruned {len(r.pruned)}" if r.pruned else "")


__all__ = ["ReplicateSummary", "TargetResult", "prepare_replicate", "replica_name"]
