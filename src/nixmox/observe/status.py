"""``nixmox status``: the lab on one screen, from the journal and one pass over the API.

The API is read once: doctor's ``proxmox``, ``guests`` and ``backups`` areas
run against a client that answers a repeated GET from memory, and the guest
rows reuse those answers (``/cluster/resources``, each guest's ``pending``,
each backup storage's content per node). Snapshots, replication lag and
update results come from the journal (listing ZFS is the ``snapshot`` job's and ``doctor``'s
business). With the API unreachable, the journal still answers.

Exit codes: 0 all fine, 1 a job's last run did not succeed, 2 doctor would
FAIL something (an unreachable API is one of those).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from nixmox.adapters.journal import Journal, Run
from nixmox.adapters.proxmox import cluster
from nixmox.adapters.proxmox.client import ReadOnce
from nixmox.adapters.proxmox.permissions import granted, holds
from nixmox.backup.archives import Archive, all_archives
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.errors import NixmoxError
from nixmox.core.tables import table_lines
from nixmox.core.verdict import Check, Status, totals
from nixmox.core.words import plural
from nixmox.core.zones import zone
from nixmox.doctor.areas import HOST_AREAS, host_areas_apply
from nixmox.inventory.model import Inventory
from nixmox.observe.history import one_line
from nixmox.observe.metrics import Samples, samples
from nixmox.pool.checks import summary as disk_words
from nixmox.pool.recorded import RecordedPool, recorded_pools
from nixmox.snapshot.policy import human, taken_at
from nixmox.snapshot.runs import SnapshotSummary

#: A guest's disk dataset (``rpool/data/vm-101-disk-0``); the group is its VMID.
_GUEST_DISK = re.compile(r"(?:^|/)(?:vm|subvol|base)-(\d+)-disk-\d+$")

#: Doctor's areas that read the API; status always runs these.
AREAS = ("proxmox", "guests", "backups")


@dataclass
class GuestRow:
    """One guest's line."""

    name: str
    vmid: int
    id: str
    node: str
    state: str = "unknown"
    last_backup: str | None = None
    backup_time: float | None = None
    backup_from: str | None = None  # api | journal
    newest_snapshot: str | None = None
    pending_changes: int | None = None
    pending_updates: int | None = None
    last_update: str | None = None


@dataclass
class NodeRow:
    """One node's host updates, per the journal (`update host`)."""

    name: str
    pending_updates: int | None = None  # upgrades not installed, a reboot held
    last_update: str | None = None


@dataclass
class DatasetRow:
    """One dataset's newest nixmox snapshot, per the newest snapshot run."""

    dataset: str
    newest: float | None
    snapshots: int


@dataclass
class ReplicaRow:
    """One replicated dataset at one target, per the newest ``replicate`` run naming it."""

    dataset: str
    target: str
    newest: float | None  # the newest nixmox snapshot on the replica (lag = now - newest)
    last_success: float | None


@dataclass
class PoolRow:
    """One pool as the newest pool runs recorded it (``pool check``, ``pool scrub``)."""

    pool: str
    state: str | None
    capacity: float | None  # percent allocated
    size: int | None
    allocated: int | None
    last_scrub: float | None  # when it ended
    scrub_outcome: str | None  # finished | canceled
    scrub_errors: int | None
    scrub_repaired: int | None
    forecast: str | None  # in words
    days_left: float | None
    checked: float | None  # when the newest `pool check` read it


@dataclass
class DiskRow:
    """One disk under a pool, per its newest SMART reading."""

    device: str
    pool: str
    model: str
    healthy: bool | None  # None: smartctl could not say
    health: str  # the reading in words


@dataclass
class JobRow:
    """One job's last run."""

    job: str
    ended: float | None
    result: str | None
    summary: str


@dataclass
class Report:
    """Everything ``status`` shows."""

    now: float
    api_error: str | None
    requests: int
    guests: list[GuestRow] = field(default_factory=list)
    nodes: list[NodeRow] = field(default_factory=list)
    datasets: list[DatasetRow] = field(default_factory=list)
    pools: list[PoolRow] = field(default_factory=list)
    disks: list[DiskRow] = field(default_factory=list)
    replicas: list[ReplicaRow] = field(default_factory=list)
    jobs: list[JobRow] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    areas: tuple[str, ...] = AREAS
    # Why the guests' state is unknown although the API answered (/cluster/resources failed).
    cluster_error: str | None = None
    # The API answered but refused the credentials (api_error says how).
    api_refused: bool = False
    # The inventory's zone (IANA name; None: this machine's): the times are shown in it.
    timezone: str | None = None

    @property
    def exit_code(self) -> int:
        """2 doctor FAIL, 1 a job's last run did not succeed, 3 (Nagios UNKNOWN) the
        cluster's guests could not be read and nothing worse is known, else 0."""
        if any(c.status is Status.FAIL for c in self.checks):
            return 2
        if any(j.result != "ok" for j in self.jobs):
            return 1
        return 3 if self.cluster_error is not None else 0

    def as_json(self) -> dict[str, Any]:
        return {
            "now": self.now,
            "timezone": self.timezone,
            "api": {
                "reachable": self.api_error is None or self.api_refused,
                "authenticated": self.api_error is None,
                "error": self.api_error,
                "cluster_error": self.cluster_error,
            },
            "requests": self.requests,
            "guests": [asdict(g) for g in self.guests],
            "nodes": [asdict(n) for n in self.nodes],
            "datasets": [asdict(d) for d in self.datasets],
            "pools": [asdict(p) for p in self.pools],
            "disks": [asdict(d) for d in self.disks],
            "replication": [
                {**asdict(r), "lag_seconds": None if r.newest is None else self.now - r.newest}
                for r in self.replicas
            ],
            "jobs": [asdict(j) for j in self.jobs],
            "doctor": {
                "areas": list(self.areas),
                "totals": totals(self.checks),
                "checks": [c.as_json() for c in self.checks if c.status is not Status.PASS],
            },
            "exit_code": self.exit_code,
        }


def _doctor(
    inv: Inventory, host_root: Path | None, clock: Clock
) -> tuple[list[Check], ReadOnce | None, tuple[str, ...]]:
    from nixmox.doctor.areas import area_checks
    from nixmox.doctor.proxmox_area import check_proxmox

    checks, plain = check_proxmox(inv, clock)
    api = None if plain is None else ReadOnce(plain)
    # Without the API the guests area has nothing to say that the proxmox FAIL does not.
    areas = ["guests", "backups"] if api is not None else ["backups"]
    if host_areas_apply(inv, host_root):
        areas += HOST_AREAS
    checks += area_checks(inv, areas, host_root or Path("/"), api)
    if plain is not None and api is not None:
        api.calls += plain.calls
    return checks, api, ("proxmox", *areas)


def _live(inv: Inventory, api: ReadOnce, rows: Mapping[int, GuestRow]) -> str | None:
    """Fill state, node, pending changes and the newest archive from the (cached) API;
    why the guests' state is unknown (``/cluster/resources`` failed or was malformed)."""
    from nixmox.doctor.backups_area import backed_up_guests

    cluster_error = None
    try:
        found = cluster.read_guests(api)
    except NixmoxError as exc:
        # Not seeing the cluster is not the same as the guests being gone.
        cluster_error, found = str(exc), {}
    held: Mapping[str, Mapping[str, Any]] | None = None
    for guest in inv.guests:
        row = rows[guest.vmid]
        listed = found.get(guest.vmid)
        if listed is None:
            if cluster_error is not None:
                row.state = "unknown"
                continue
            # /cluster/resources leaves out what the token may not audit: that is not "missing".
            if held is None:
                held = _granted(api)
            audits = holds(held, f"/vms/{guest.vmid}", "VM.Audit")
            row.state = "missing" if audits else "cannot see"
            continue
        row.state, row.node = listed.status, listed.node
        try:
            path = cluster.guest_path(guest.node, guest.pve_type, guest.vmid)
            pending = api.get(f"{path}/pending")
            row.pending_changes = sum(1 for p in pending if "pending" in p or p.get("delete"))
        except NixmoxError:
            pass
    if inv.backups is None:
        return cluster_error
    storage, tz = inv.backups.storage, zone(inv.timezone)
    for node in sorted({g.node for g in backed_up_guests(inv)}):
        path = f"/nodes/{node}/storage/{storage}/content"
        try:
            archives = all_archives(api.get(path, content="backup") or [], tz)
        except NixmoxError:
            continue
        newest_of: dict[tuple[int, str], Archive] = {}
        for archive in archives:  # newest first: keep each guest's first
            newest_of.setdefault((archive.vmid, archive.kind), archive)
        for guest in (g for g in inv.guests if g.node == node):
            newest = newest_of.get((guest.vmid, guest.pve_type))
            if newest is not None:
                row = rows[guest.vmid]
                row.last_backup, row.backup_time = newest.volid, newest.time.timestamp()
                row.backup_from = "api"
    return cluster_error


def _granted(api: ReadOnce) -> Mapping[str, Mapping[str, Any]]:
    """What the token holds; everything when ``/access/permissions`` cannot be read (then a
    guest the cluster does not list is missing, as before)."""
    try:
        return granted(api)
    except NixmoxError:
        return {"/": {"VM.Audit": 1}}


def _journal(
    inv: Inventory, data: Samples, snapshot_run: Run | None, rows: Mapping[int, GuestRow]
) -> None:
    """Fill what the journal knows: backups (when the API did not say), snapshots, updates."""
    backups = data["nixmox_guest_backup_newest_timestamp_seconds"]
    updates = data["nixmox_guest_update_last_success"]
    pending = data["nixmox_pending_updates"]
    # Each guest's disks among the snapshotted datasets, by the VMID in their names.
    disks: dict[str, list[str]] = {}
    for ds, name in _snapshot_datasets(snapshot_run).items():
        found = _GUEST_DISK.search(ds)
        if found is not None:
            disks.setdefault(found.group(1), []).append(name)
    for guest in inv.guests:
        row = rows[guest.vmid]
        labels = (row.id, guest.name)
        if row.backup_time is None and labels in backups:
            row.backup_time, row.backup_from = backups[labels], "journal"
        if labels in updates:
            row.last_update = "ok" if updates[labels] else "failed"
        if (guest.name,) in pending:
            row.pending_updates = int(pending[(guest.name,)])
        mine = disks.get(str(guest.vmid))
        row.newest_snapshot = max(mine) if mine else None


def _nodes(inv: Inventory, data: Samples) -> list[NodeRow]:
    """Each declared node's pending host updates and the last `update host` result."""
    updates = data["nixmox_guest_update_last_success"]
    pending = data["nixmox_pending_updates"]
    rows = []
    for node in inv.nodes:
        row = NodeRow(node.name)
        labels = (f"node/{node.name}", node.name)
        if labels in updates:
            row.last_update = "ok" if updates[labels] else "failed"
        if (node.name,) in pending:
            row.pending_updates = int(pending[(node.name,)])
        rows.append(row)
    return rows


def _snapshot_datasets(run: Run | None) -> dict[str, str]:
    """dataset -> the snapshot the run took of it."""
    out: dict[str, str] = {}
    if run is None:
        return out
    for target in SnapshotSummary.from_json(run.summary).targets:
        if target.taken:
            for ds in target.datasets:
                out[ds.dataset] = target.taken
    return out


def pool_rows(recorded: list[RecordedPool]) -> tuple[list[PoolRow], list[DiskRow]]:
    """The pool and disk lines from what the pool runs recorded."""
    pools, disks = [], []
    for p in recorded:
        scrub = p.scrub
        pools.append(
            PoolRow(
                p.pool,
                p.state,
                None if p.capacity is None else round(p.capacity, 1),
                p.size,
                p.allocated,
                None if scrub is None else scrub.ended,
                None if scrub is None else scrub.outcome,
                None if scrub is None else scrub.errors,
                None if scrub is None else scrub.repaired,
                None if p.fill is None else p.fill.words,
                None if p.fill is None else p.fill.days_left,
                p.checked,
            )
        )
        for d in p.disks:
            if d.error is not None:
                healthy, words = None, f"not read: {d.error}"
            else:
                healthy = None if d.passed is None else bool(d.passed and not d.critical_warning)
                words = disk_words(d)
                if healthy is False:
                    words = "FAILING: " + words
            disks.append(DiskRow(d.name, p.pool, d.model, healthy, words))
    return pools, disks


def gather(
    inv: Inventory,
    journal: Journal,
    now: datetime | None = None,
    host_root: Path | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> Report:
    """Read the journal and make one pass over the API (plus the host's own
    checks where they apply, see :func:`host_areas_apply`)."""
    when = now or clock.now()
    latest = journal.latest()
    runs = journal.runs(limit=500)
    data = samples(
        latest,
        journal.totals(),
        runs,
        {g.name: g.pve_type for g in inv.guests},
        zone(inv.timezone),
    )
    checks, api, areas = _doctor(inv, host_root, clock)
    reach = next(
        (c for c in checks if c.id.startswith("proxmox-") and c.status is not Status.PASS), None
    )
    api_error = None
    if api is None:
        api_error = reach.message if reach is not None else "the Proxmox API is not reachable"
    # A refused token is not an unreachable server: the header says which.
    refused = reach is not None and reach.id == "proxmox-token"
    rows = {
        g.vmid: GuestRow(g.name, g.vmid, f"{g.pve_type}/{g.vmid}", g.node)
        for g in sorted(inv.guests, key=lambda g: g.vmid)
    }
    cluster_error = _live(inv, api, rows) if api is not None else None
    _journal(inv, data, latest.get("snapshot"), rows)
    newest = data["nixmox_dataset_snapshot_newest_timestamp_seconds"]
    counts = data["nixmox_dataset_snapshots"]
    report = Report(when.timestamp(), api_error, api.calls if api is not None else 0)
    report.api_refused = refused
    report.timezone = inv.timezone
    report.areas = areas
    report.cluster_error = cluster_error
    report.guests = list(rows.values())
    report.nodes = _nodes(inv, data)
    report.datasets = [
        DatasetRow(ds, newest.get((ds,)), int(n)) for (ds,), n in sorted(counts.items())
    ]
    report.pools, report.disks = pool_rows(recorded_pools(runs))
    replicated = data["nixmox_replication_newest_timestamp_seconds"]
    succeeded = data["nixmox_replication_last_success_timestamp_seconds"]
    report.replicas = [
        ReplicaRow(ds, target, replicated.get((ds, target)), succeeded.get((ds, target)))
        for ds, target in sorted(set(replicated) | set(succeeded))
    ]
    report.jobs = [
        JobRow(job, run.ended, run.result, one_line(run, 80)) for job, run in sorted(latest.items())
    ]
    report.checks = checks
    return report


def _age(now: float, then: float | None) -> str:
    return "-" if then is None else human(timedelta(seconds=max(0.0, now - then)))


def _when(epoch: float | None, tz: tzinfo) -> str:
    from nixmox.observe.history import local_time

    return "-" if epoch is None else local_time(epoch, tz, seconds=False)


def lines(report: Report) -> list[str]:
    """The report as plain text, one line per row; times in the inventory's zone, named."""
    from nixmox.observe.history import local_time

    tz = zone(report.timezone)

    api = (
        "reachable"
        if report.api_error is None
        else f"REFUSED THE CREDENTIALS: {report.api_error}"
        if report.api_refused
        else f"UNREACHABLE: {report.api_error}"
    )
    if report.cluster_error is not None:
        api += f", but the guests are UNKNOWN: {report.cluster_error}"
    out = [f"nixmox status at {local_time(report.now, tz)}: Proxmox API {api}", ""]
    guest_rows = [("guest", "id", "node", "state", "last backup", "age", "snapshot", "pending")]
    for g in report.guests:
        snap = taken_at(g.newest_snapshot) if g.newest_snapshot else None
        pending = "-" if g.pending_changes is None else f"{g.pending_changes} config"
        if g.pending_updates is not None:
            pending += f", {plural(g.pending_updates, 'update')}"
        if g.last_update is not None:
            pending += f", last update {g.last_update}"
        guest_rows.append(
            (
                g.name,
                g.id,
                g.node,
                g.state,
                _when(g.backup_time, tz) + (" (journal)" if g.backup_from == "journal" else ""),
                _age(report.now, g.backup_time),
                "-" if snap is None else _age(report.now, snap.timestamp()) + " ago",
                pending,
            )
        )
    out += table_lines(guest_rows)
    known = [n for n in report.nodes if n.last_update is not None or n.pending_updates]
    if known:
        out.append("")
        node_rows = [("node", "host updates")]
        for n in known:
            words = [f"last update {n.last_update}"] if n.last_update else []
            if n.pending_updates:
                words.append(f"{n.pending_updates} pending")
            node_rows.append((n.name, ", ".join(words)))
        out += table_lines(node_rows)
    if report.datasets:
        out.append("")
        ds_rows = [("dataset", "newest snapshot", "age", "count")]
        ds_rows += [
            (d.dataset, _when(d.newest, tz), _age(report.now, d.newest), str(d.snapshots))
            for d in report.datasets
        ]
        out += table_lines(ds_rows)
    out += _pool_lines(report)
    if report.replicas:
        out.append("")
        rep_rows = [("replicated dataset", "target", "newest on target", "lag", "last success")]
        rep_rows += [
            (
                r.dataset,
                r.target,
                _when(r.newest, tz),
                _age(report.now, r.newest),
                _when(r.last_success, tz),
            )
            for r in report.replicas
        ]
        out += table_lines(rep_rows)
    out.append("")
    job_rows = [("job", "last run", "result", "summary")]
    job_rows += [(j.job, _when(j.ended, tz), j.result or "-", j.summary) for j in report.jobs]
    out += table_lines(job_rows) if report.jobs else ["no job has run yet (the journal is empty)"]
    out.append("")
    bad = [c for c in report.checks if c.status in (Status.FAIL, Status.UNKNOWN, Status.WARN)]
    counts = totals(report.checks)
    out.append(
        f"doctor ({', '.join(report.areas)}): "
        + (", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n) or "no checks ran")
    )
    out += [f"{c.status.value:<7} {c.id:<16} {c.subject}: {c.message}" for c in bad]
    return out


def _scrub_words(now: float, p: PoolRow, tz: tzinfo) -> str:
    if p.last_scrub is None:
        return "-"
    said = f"{_when(p.last_scrub, tz)} ({_age(now, p.last_scrub)} ago)"
    if p.scrub_outcome == "canceled":
        return said + ", canceled"
    said += f", {p.scrub_errors or 0} errors"
    return said + (f", {p.scrub_repaired} B repaired" if p.scrub_repaired else "")


def _pool_lines(report: Report) -> list[str]:
    """The pools' and disks' tables (empty when no pool run is journaled)."""
    out: list[str] = []
    if report.pools:
        out.append("")
        rows = [("pool", "state", "used", "last scrub", "forecast")]
        rows += [
            (
                p.pool,
                p.state or "-",
                "-" if p.capacity is None else f"{p.capacity:.0f}%",
                _scrub_words(report.now, p, zone(report.timezone)),
                p.forecast or "-",
            )
            for p in report.pools
        ]
        out += table_lines(rows)
    if report.disks:
        out.append("")
        disk_rows = [("disk", "pool", "health")]
        disk_rows += [(d.device, d.pool, d.health) for d in report.disks]
        out += table_lines(disk_rows)
    return out
