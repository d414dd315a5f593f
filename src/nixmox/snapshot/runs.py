"""A ``snapshot`` run and its ``--monitor`` check, as the CLI starts them.

:func:`prepare_snapshot` checks the inventory and returns the work for
:func:`nixmox.runtime.run.run_job`; :class:`SnapshotSummary` is what the
journal stores (``history``, ``status`` and the metrics read it back).
:func:`monitor` is the read-only freshness check.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from nixmox.adapters.locks import Claim, dataset_claims, guest_claims
from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.cluster import guest_path, read_guests
from nixmox.adapters.proxmox.permissions import Need, granted, preflight
from nixmox.adapters.proxmox.settings import connection
from nixmox.adapters.proxmox.tasks import wait
from nixmox.adapters.runner import Runner
from nixmox.adapters.zfs import Zfs
from nixmox.core import jsonrows
from nixmox.core.errors import ConfigError
from nixmox.core.progress import SILENT, Progress
from nixmox.core.results import AllPartsOk
from nixmox.core.zones import zone
from nixmox.inventory.model import Inventory, Snapshots
from nixmox.rules.timespan import parse_timedelta
from nixmox.snapshot.job import DatasetResult, Freshness, TreeResult, check_freshness, run_target
from nixmox.snapshot.recover import (
    GuestUse,
    RollbackResult,
    SnapshotRow,
    browse,
    guest_of,
    list_snapshots,
    rollback,
    split_snapshot,
    unbrowse,
)


def snapshot_settings(inv: Inventory) -> Snapshots:
    """``[snapshots]``, refused when it declares no dataset."""
    if inv.snapshots is None or not inv.snapshots.datasets:
        raise ConfigError("the inventory declares no [[snapshots.datasets]]: nothing to snapshot")
    return inv.snapshots


def snapshot_claims(inv: Inventory) -> list[Claim]:
    """What a ``snapshot`` run locks: its dataset trees only (never a guest or a node,
    so a backup or an update never holds it up)."""
    return dataset_claims(t.dataset for t in snapshot_settings(inv).datasets)


def recovery_claims(inv: Inventory, snapshot: str) -> list[Claim]:
    """What ``snapshot rollback`` and ``snapshot clone`` lock: the snapshot's dataset tree
    (a snapshot or replicate run on it waits) and, for a guest's disk, that guest (a
    rollback may stop it: a backup or an update of it waits)."""
    dataset, _ = split_snapshot(snapshot)
    claims = dataset_claims([dataset])
    vmid = guest_of(inv, dataset)
    claims += guest_claims((g.vmid, g.node) for g in inv.guests if g.vmid == vmid)
    return claims


def target_row(result: TreeResult) -> dict[str, Any]:
    """One snapshot target as JSON (journal and ``--json``)."""
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


def _target_from_json(row: Mapping[str, Any]) -> TreeResult:
    return TreeResult(
        dataset=jsonrows.text(row, "dataset"),
        policy=jsonrows.text(row, "policy"),
        recursive=bool(row.get("recursive")),
        taken=jsonrows.optional_text(row, "taken"),
        error=jsonrows.optional_text(row, "error"),
        datasets=[jsonrows.record(DatasetResult, d) for d in jsonrows.rows(row, "datasets")],
    )


@dataclass(frozen=True)
class SnapshotSummary(AllPartsOk):
    """A ``snapshot`` run: each target's result; with ``--dry-run``, the commands it would run."""

    targets: tuple[TreeResult, ...]
    zfs_calls: int = 0
    commands: tuple[str, ...] = ()  # skipped by a dry run; not journaled

    def parts(self) -> Iterable[TreeResult]:
        return self.targets

    def to_json(self) -> dict[str, Any]:
        return {"targets": [target_row(t) for t in self.targets], "zfs_calls": self.zfs_calls}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SnapshotSummary:
        return cls(
            tuple(_target_from_json(t) for t in jsonrows.rows(data, "targets")),
            jsonrows.integer(data, "zfs_calls"),
        )


def prepare_snapshot(
    inv: Inventory, *, dry_run: bool, progress: Progress = SILENT
) -> Callable[[], SnapshotSummary]:
    """Take and prune every configured target's snapshots, ready to run; ``progress``
    hears each tree's start and end."""
    snaps = snapshot_settings(inv)
    runner = Runner(dry_run=dry_run)
    zfs = Zfs(runner, inv.zfs.command)
    now = datetime.now(UTC)
    tz = zone(inv.timezone)

    def take_and_prune() -> SnapshotSummary:
        results = []
        for t in snaps.datasets:
            progress.start(t.dataset, f"snapshotting {t.dataset}")
            r = run_target(zfs, t, snaps.policies[t.policy], tz, now)
            removed = sum(len(d.removed) for d in r.datasets)
            how = (
                f"FAILED: {r.error}"
                if r.error
                else f"{r.taken or 'no snapshot'}, {removed} removed"
            )
            progress.end(t.dataset, f"{t.dataset}: {how}")
            results.append(r)
        skipped = [shlex.join(r.argv) for r in runner.history if r.skipped]
        return SnapshotSummary(tuple(results), len(runner.history), tuple(skipped))

    return take_and_prune


@dataclass(frozen=True)
class MonitorReport:
    """``--monitor``'s verdicts and the worst of them (Nagios: 0 OK ... 3 UNKNOWN)."""

    checks: tuple[Freshness, ...]
    worst: int


def _span(text: str | None) -> timedelta | None:
    return None if text is None else parse_timedelta(text)


def monitor(inv: Inventory, *, dry_run: bool = False) -> MonitorReport:
    """How fresh each target's newest nixmox snapshot is (reads only)."""
    snaps = snapshot_settings(inv)
    zfs = Zfs(Runner(dry_run=dry_run), inv.zfs.command)
    now = datetime.now(UTC)
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
    return MonitorReport(tuple(checks), worst)


# -- list, browse, rollback -----------------------------------------------------------


@dataclass(frozen=True)
class BrowseSummary:
    """A ``snapshot clone`` run: the clone made (or removed) and where it is mounted."""

    snapshot: str
    clone: str
    mountpoint: str | None
    removed: bool = False

    @property
    def result(self) -> str:
        return "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot,
            "clone": self.clone,
            "mountpoint": self.mountpoint,
            "removed": self.removed,
        }


def prepare_browse(
    inv: Inventory, snapshot: str, *, mountpoint: str | None, remove: bool, dry_run: bool
) -> Callable[[], BrowseSummary]:
    """Clone ``snapshot`` to a read-only mount, or remove that clone."""
    split_snapshot(snapshot)
    zfs = Zfs(Runner(dry_run=dry_run), inv.zfs.command)

    def work() -> BrowseSummary:
        if remove:
            return BrowseSummary(snapshot, unbrowse(zfs, snapshot), None, removed=True)
        clone, where = browse(zfs, snapshot, mountpoint)
        return BrowseSummary(snapshot, clone, where)

    return work


def snapshot_rows(inv: Inventory, dataset: str | None) -> list[SnapshotRow]:
    """``snapshot list``'s rows (reads only)."""
    return list_snapshots(Zfs(Runner(), inv.zfs.command), dataset)


#: The command the rollback's preflight names.
ROLLBACK = "snapshot rollback"


def prepare_rollback(
    inv: Inventory,
    snapshot: str,
    allowed: list[str],
    *,
    stop: bool,
    dry_run: bool,
) -> Callable[[], RollbackResult]:
    """The guarded rollback of ``snapshot``, ready to run (see ``snapshot.recover``)."""
    dataset, _ = split_snapshot(snapshot)
    runner = Runner(dry_run=dry_run)
    zfs = Zfs(runner, inv.zfs.command)
    vmid = guest_of(inv, dataset)
    use: GuestUse | None = None
    api: Proxmox | None = None
    if vmid is not None:
        api = Proxmox(connection(inv.proxmox))
        # A token that cannot see the guest would find no guest on the disk and roll
        # it back under a running system: seeing it comes first (VM.Audit).
        held = granted(api)
        whose = f"see guest {vmid}, whose disk {dataset} is"
        see = [Need(f"/vms/{vmid}", "VM.Audit", whose)]
        preflight(api, see, ROLLBACK, dry_run=dry_run, held=held)
        row = read_guests(api).get(vmid)
        if row is not None:
            use = GuestUse(vmid, row.node, row.type, row.status == "running")
            if use.running and stop:
                why = f"stop guest {vmid} for the rollback and start it again"
                mgmt = [Need(f"/vms/{vmid}", "VM.PowerMgmt", why)]
                preflight(api, mgmt, ROLLBACK, dry_run=dry_run, held=held)
    calls: list[str] = []

    def power(action: str) -> Callable[[GuestUse], None]:
        def act(g: GuestUse) -> None:
            path = f"{guest_path(g.node, g.kind, g.vmid)}/status/{action}"
            calls.append(f"POST {path}")
            if not dry_run and api is not None:
                wait(api, api.post(path), what=f"{action} guest {g.vmid}")

        return act

    def work() -> RollbackResult:
        result = rollback(
            zfs,
            snapshot,
            allowed,
            guest=use,
            stop_guest=power("shutdown"),
            start_guest=power("start"),
            stop=stop,
        )
        result.commands = calls + [shlex.join(r.argv) for r in runner.history if r.skipped]
        return result

    return work
