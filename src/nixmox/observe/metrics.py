"""Prometheus textfile metrics, built from the run journal after every run.

Only the metrics of :data:`nixmox.observe.metric_names.METRICS` are written,
each with exactly its labels. Values come from the journal, never from the
API: writing the file costs a few SQLite reads.

- jobs: the newest finished run of each command (label ``command``), and run
  counts by result, which :mod:`nixmox.observe.run_counts` keeps growing even
  when journal rows are pruned or the journal is replaced;
- guests: the newest archive each guest got from a ``backup`` run (the
  archive's name carries its time, in the inventory's zone);
- datasets: the snapshot the newest ``snapshot`` run took, and how many
  nixmox snapshots retention kept;
- replication: per source dataset and target, the newest nixmox snapshot on
  the replica (the lag is ``time()`` minus it) and when its last successful
  run ended, from the newest ``replicate`` run that covered it (a run may name
  one ``--dataset`` only);
- updates: rollbacks (counted like the runs) and the last result per guest from
  ``update ...`` runs, and what is still pending per target after the newest
  run of each (:class:`nixmox.updates.outcome.UpdateSummary`);
- pools and disks: what the pool runs last recorded
  (:func:`nixmox.pool.recorded.recorded_pools`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import tzinfo
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from nixmox.adapters.journal import Journal, Run
from nixmox.backup.archives import parse_volid
from nixmox.backup.runs import BackupSummary
from nixmox.core.errors import NixmoxError
from nixmox.core.files import write_atomically
from nixmox.inventory.model import Inventory
from nixmox.observe import run_counts
from nixmox.observe.metric_names import METRICS, POOL_STATES, RUN_RESULTS
from nixmox.observe.summaries import read
from nixmox.pool.recorded import RecordedPool, recorded_pools
from nixmox.replicate.runs import ReplicateSummary
from nixmox.snapshot.policy import taken_at
from nixmox.snapshot.runs import SnapshotSummary
from nixmox.updates.outcome import UpdateOutcome, UpdateSummary

#: metric name -> label values -> value
Samples = dict[str, dict[tuple[str, ...], float]]

#: How far back the journal is read for per-guest facts.
HISTORY = 500


def _guest_kinds(inv: Inventory) -> dict[str, str]:
    return {g.name: g.pve_type for g in inv.guests}


def samples(
    latest: Mapping[str, Run],
    totals: Mapping[tuple[str, str], int],
    runs: Iterable[Run],
    kinds: Mapping[str, str],
    zone: tzinfo,
) -> Samples:
    """Every sample, from the journal: ``runs`` newest first (any commands)."""
    out: Samples = {name: {} for name in METRICS}
    for command, run in latest.items():
        out["nixmox_job_last_run_timestamp_seconds"][(command,)] = run.ended or run.started
        out["nixmox_job_last_run_duration_seconds"][(command,)] = run.seconds or 0.0
        out["nixmox_job_last_run_success"][(command,)] = 1.0 if run.result == "ok" else 0.0
    runs_total = out["nixmox_job_runs_total"]
    for (command, result), count in totals.items():
        runs_total[(command, result or "unknown")] = float(count)
        for known in RUN_RESULTS:
            runs_total.setdefault((command, known), 0.0)
    snapshot_seen = False
    pending_seen: set[str] = set()
    runs = list(runs)
    for pool in recorded_pools(runs):
        _pool(out, pool)
    for run in runs:
        if run.ended is None:
            continue
        summary = read(run)
        if isinstance(summary, BackupSummary):
            _backup(out, summary, zone)
        elif isinstance(summary, SnapshotSummary) and not snapshot_seen:
            snapshot_seen = True
            _snapshot(out, summary)
        elif isinstance(summary, ReplicateSummary):
            _replicate(out, summary, run.ended)
        elif isinstance(summary, UpdateSummary):
            _update(out, summary, kinds, run.command not in pending_seen)
            pending_seen.add(run.command)
    return out


def _replicate(out: Samples, summary: ReplicateSummary, ended: float) -> None:
    """Runs come newest first: the first run naming a dataset has its newest facts."""
    newest = out["nixmox_replication_newest_timestamp_seconds"]
    success = out["nixmox_replication_last_success_timestamp_seconds"]
    for entry, ds in summary.datasets():
        labels = (ds.dataset, entry.target)
        when = taken_at(ds.newest or "")
        if when is not None:
            newest.setdefault(labels, when.timestamp())
        if ds.ok:
            success.setdefault(labels, ended)


def _backup(out: Samples, summary: BackupSummary, zone: tzinfo) -> None:
    newest = out["nixmox_guest_backup_newest_timestamp_seconds"]
    for guest in summary.guests:
        parsed = parse_volid(guest.volid or "", zone)
        if guest.result != "ok" or parsed is None:
            continue
        kind, vmid, when = parsed
        labels = (f"{kind}/{vmid}", guest.name)
        if labels in newest:  # a newer run already named this guest's newest archive
            continue
        newest[labels] = when.timestamp()
        out["nixmox_guest_backup_newest_size_bytes"][labels] = float(guest.size)


def _snapshot(out: Samples, summary: SnapshotSummary) -> None:
    for target in summary.targets:
        when = taken_at(target.taken or "")
        for ds in target.datasets:
            if when is not None:
                out["nixmox_dataset_snapshot_newest_timestamp_seconds"][(ds.dataset,)] = (
                    when.timestamp()
                )
            out["nixmox_dataset_snapshots"][(ds.dataset,)] = float(ds.kept)


def _pool(out: Samples, pool: RecordedPool) -> None:
    name = pool.pool
    if pool.state is not None:
        for state in dict.fromkeys((*POOL_STATES, pool.state)):
            out["nixmox_pool_state"][(name, state)] = 1.0 if state == pool.state else 0.0
        out["nixmox_pool_data_errors"][(name,)] = float(pool.data_errors)
        for v in pool.vdevs:
            for kind, count in (("read", v.read), ("write", v.write), ("checksum", v.checksum)):
                out["nixmox_pool_vdev_errors"][(name, v.name, kind)] = float(count)
    if pool.size is not None and pool.allocated is not None:
        out["nixmox_pool_size_bytes"][(name,)] = float(pool.size)
        out["nixmox_pool_allocated_bytes"][(name,)] = float(pool.allocated)
    if pool.fragmentation is not None:
        out["nixmox_pool_fragmentation_ratio"][(name,)] = pool.fragmentation / 100
    if pool.scrub is not None:
        out["nixmox_pool_scrub_last_end_timestamp_seconds"][(name,)] = pool.scrub.ended
        out["nixmox_pool_scrub_last_errors"][(name,)] = float(pool.scrub.errors)
        out["nixmox_pool_scrub_last_repaired_bytes"][(name,)] = float(pool.scrub.repaired)
    if pool.fill is not None and pool.fill.days_left is not None:
        out["nixmox_pool_fill_forecast_seconds"][(name,)] = pool.fill.days_left * 86400
    for disk in pool.disks:
        if disk.error is not None:
            continue
        labels = (disk.name,)
        if disk.passed is not None:
            healthy = disk.passed and not disk.critical_warning
            out["nixmox_disk_smart_healthy"][labels] = 1.0 if healthy else 0.0
        for metric, value in (
            ("nixmox_disk_reallocated_sectors", disk.reallocated),
            ("nixmox_disk_pending_sectors", disk.pending),
            ("nixmox_disk_media_errors", disk.media_errors),
            ("nixmox_disk_endurance_used_ratio", _percent(disk.percentage_used)),
            ("nixmox_disk_temperature_celsius", disk.temperature),
            ("nixmox_disk_power_on_seconds", _hours(disk.power_on_hours)),
        ):
            if value is not None:
                out[metric][labels] = float(value)


def _percent(value: int | None) -> float | None:
    return None if value is None else value / 100


def _hours(value: int | None) -> float | None:
    return None if value is None else value * 3600.0


# Results that say nothing about whether updating the guest works.
_NOT_ATTEMPTED = frozenset({"skipped", "dry-run"})


def _update(
    out: Samples, summary: UpdateSummary, kinds: Mapping[str, str], newest_of_command: bool
) -> None:
    if newest_of_command:  # what is still waiting: from the newest run of this command only
        for target, count in summary.pending().items():
            out["nixmox_pending_updates"].setdefault((target,), float(count))
    rollbacks = out["nixmox_update_rollbacks_total"]
    last = out["nixmox_guest_update_last_success"]
    for o in summary.outcomes:
        labels = _target(o, kinds)
        rollbacks[labels] = rollbacks.get(labels, 0.0) + (1.0 if o.rolled_back else 0.0)
        if o.result in _NOT_ATTEMPTED:
            continue
        # Nothing to do, or installed with the reboot held by policy: the update did not fail.
        last.setdefault(labels, 0.0 if o.failed else 1.0)


def _target(o: UpdateOutcome, kinds: Mapping[str, str]) -> tuple[str, str]:
    """``(id, name)`` of an update's target, as prometheus-pve-exporter names it."""
    if o.vmid is None:  # a node (update host)
        return (f"node/{o.guest}", o.guest)
    return (f"{kinds.get(o.guest, 'qemu')}/{o.vmid}", o.guest)


def rollbacks_of(kinds: Mapping[str, str]) -> run_counts.RollbacksOf:
    def of(run: Run) -> list[tuple[str, str]]:
        summary = read(run)
        if not isinstance(summary, UpdateSummary):
            return []
        return [_target(o, kinds) for o in summary.outcomes if o.rolled_back]

    return of


class _Collector(Collector):
    def __init__(self, data: Samples) -> None:
        self.data = data

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        for name, (kind, labels, help_text) in METRICS.items():
            family: GaugeMetricFamily | CounterMetricFamily
            if kind == "counter":
                family = CounterMetricFamily(name, help_text, labels=list(labels))
            else:
                family = GaugeMetricFamily(name, help_text, labels=list(labels))
            for values, value in sorted(self.data.get(name, {}).items()):
                family.add_metric(list(values), value)
            yield family


def registry(data: Samples) -> CollectorRegistry:
    """A registry holding exactly ``data``."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector(data))
    return reg


def write_textfile(path: Path, reg: CollectorRegistry) -> None:
    """Write ``reg`` to ``path`` atomically (a temporary file renamed over it)."""
    try:
        write_atomically(path, generate_latest(reg), 0o644)
    except NixmoxError as exc:
        raise NixmoxError(f"metrics textfile: {exc}") from None


def update_textfile(inv: Inventory, journal: Journal, zone: tzinfo) -> Path | None:
    """Rewrite ``[metrics] textfile`` from the journal; ``None`` without ``[metrics]``."""
    if inv.metrics is None:
        return None
    path = Path(inv.metrics.textfile)
    kinds = _guest_kinds(inv)
    window = journal.runs(limit=HISTORY)
    # The counters come from the persisted tally, never from the journal's rows alone.
    tally = run_counts.update(journal.path.parent, window, journal.totals, rollbacks_of(kinds))
    data = samples(journal.latest(), tally.runs, window, kinds, zone)
    rollbacks = data["nixmox_update_rollbacks_total"]
    for labels in rollbacks:  # a guest updated but never rolled back stays at 0
        rollbacks[labels] = 0.0
    for labels, count in tally.rollbacks.items():
        rollbacks[labels] = float(count)
    write_textfile(path, registry(data))
    return path
