"""Doctor areas ``storage`` (pools, datasets, Proxmox storages) and ``snapshots``.

The verdicts (``pool_checks``, ``dataset_checks``, ``storage_checks``,
``snapshot_check``) are pure functions over what the adapters returned; the
``check_*`` functions at the end gather it (zpool/zfs through the runner,
the API when reachable) and never raise for what they find.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.zfs import PoolStatus, Zfs, Zpool
from nixmox.core.errors import NixmoxError
from nixmox.core.verdict import Check, Status
from nixmox.inventory.model import Dataset, Inventory, Pool, Storage
from nixmox.rules.timespan import parse_timedelta
from nixmox.snapshot.job import Freshness, check_freshness

#: ZFS gets slow and may fail writes above this, whatever the inventory allows.
POOL_FULL_PERCENT = 95
_BROKEN_HEALTH = ("FAULTED", "UNAVAIL", "SUSPENDED", "REMOVED", "OFFLINE")


# -- verdicts --------------------------------------------------------------------


def pool_checks(found: Sequence[PoolStatus], declared: Iterable[Pool]) -> list[Check]:
    """Each declared pool is imported, ONLINE, and below its ``max_used_percent``."""
    by_name = {p.name: p for p in found}
    out = []
    for pool in declared:
        seen = by_name.get(pool.name)
        if seen is None:
            out.append(
                Check(
                    "pool-health",
                    Status.FAIL,
                    pool.name,
                    "pool not imported",
                    f"`zpool import {pool.name}` (see `zpool import` for what can be imported)",
                )
            )
            continue
        if seen.health == "ONLINE":
            out.append(Check("pool-health", Status.PASS, pool.name, "ONLINE"))
        else:
            out.append(
                Check(
                    "pool-health",
                    Status.FAIL if seen.health in _BROKEN_HEALTH else Status.WARN,
                    pool.name,
                    seen.health,
                    f"`zpool status -v {pool.name}`: replace the failed device "
                    f"(`zpool replace {pool.name} OLD NEW`), then `zpool clear {pool.name}`",
                )
            )
        used = f"{seen.capacity}% used ({seen.alloc} of {seen.size}, {seen.free} free)"
        if seen.capacity <= pool.max_used_percent:
            out.append(
                Check(
                    "pool-capacity",
                    Status.PASS,
                    pool.name,
                    f"{used}, threshold {pool.max_used_percent}%",
                )
            )
            continue
        full = seen.capacity >= POOL_FULL_PERCENT
        out.append(
            Check(
                "pool-capacity",
                Status.FAIL if full else Status.WARN,
                pool.name,
                f"{used}, over the threshold of {pool.max_used_percent}%"
                + ("; ZFS slows down and may fail writes" if full else ""),
                "free space: prune old snapshots and backups (`zfs list -o space -r "
                f"{pool.name}`), or add disks; or raise pools.max_used_percent",
            )
        )
    return out


def dataset_checks(existing: set[str], declared: Iterable[Dataset]) -> list[Check]:
    """Each declared dataset exists."""
    out = []
    for ds in declared:
        if ds.name in existing:
            out.append(Check("dataset-exists", Status.PASS, ds.name, "exists"))
            continue
        options = [f"-o {k}={v}" for k, v in sorted(ds.properties.items())]
        out.append(
            Check(
                "dataset-exists",
                Status.FAIL,
                ds.name,
                "no such dataset",
                f"`zfs create -p {' '.join([*options, shlex.quote(ds.name)])}`",
            )
        )
    return out


def pvesm_add(storage: Storage) -> str:
    """The ``pvesm add`` command that creates ``storage`` as the inventory declares it."""
    argv = ["pvesm", "add", storage.type, storage.storage]
    if storage.type == "zfspool" and storage.dataset:
        argv += ["--pool", storage.dataset]
    elif storage.path:
        argv += ["--path", storage.path]
    if storage.content:
        argv += ["--content", ",".join(storage.content)]
    if storage.sparse:
        argv += ["--sparse", "1"]
    if storage.nodes:
        argv += ["--nodes", ",".join(storage.nodes)]
    if storage.mount_guard:
        argv += ["--is_mountpoint", "yes"]
    return shlex.join(argv)


def storage_checks(
    config: Sequence[Mapping[str, Any]],
    status: Mapping[str, Sequence[Mapping[str, Any]]],
    declared: Iterable[Storage],
    all_nodes: Sequence[str],
) -> list[Check]:
    """Each declared storage is configured (``/storage``), of its type, and active and
    enabled on its nodes (``/nodes/{node}/storage``)."""
    configured = {str(s.get("storage")): s for s in config}
    out = []
    for storage in declared:
        name = storage.storage
        cfg = configured.get(name)
        if cfg is None:
            out.append(
                Check(
                    "storage-exists",
                    Status.WARN,
                    name,
                    "not configured in Proxmox",
                    f"`nixmox apply` creates it, or `{pvesm_add(storage)}`",
                )
            )
            continue
        if cfg.get("type") != storage.type:
            out.append(
                Check(
                    "storage-exists",
                    Status.FAIL,
                    name,
                    f"a {cfg.get('type')} storage, the inventory says {storage.type}",
                    "fix storages.type in the inventory, or remove and re-add the storage",
                )
            )
            continue
        out.append(Check("storage-exists", Status.PASS, name, f"{storage.type} storage"))
        if storage.mount_guard:
            out.append(_mount_guard(storage, cfg))
        for node in storage.nodes or all_nodes:
            out.append(_storage_status(name, node, status.get(node)))
    return out


def _mount_guard(storage: Storage, cfg: Mapping[str, Any]) -> Check:
    """A dir storage on a dataset (or declared a mount point) has Proxmox's mount guard."""
    subject = storage.storage
    value = str(cfg.get("is_mountpoint", "")).strip().lower()
    # pve-storage DirPlugin::parse_is_mountpoint: a boolean, or a path to check instead.
    if value and value not in ("0", "no", "off", "false"):
        return Check("storage-mountpoint", Status.PASS, subject, "is_mountpoint set")
    on = f" on dataset {storage.dataset}" if storage.dataset else ""
    return Check(
        "storage-mountpoint",
        Status.WARN,
        subject,
        f"dir storage{on} without is_mountpoint: while {storage.path} is not mounted, "
        "Proxmox writes into the root file system",
        f"`nixmox apply`, or `pvesm set {subject} --is_mountpoint yes`",
    )


def _storage_status(name: str, node: str, listing: Sequence[Mapping[str, Any]] | None) -> Check:
    subject = f"{name} on {node}"
    if listing is None:
        return Check(
            "storage-active",
            Status.UNKNOWN,
            subject,
            f"no storage status from node {node}",
            "check that the node is online (`pvecm status`)",
        )
    entry = next((s for s in listing if s.get("storage") == name), None)
    if entry is None or not entry.get("active"):
        return Check(
            "storage-active",
            Status.FAIL,
            subject,
            "not active" if entry else "not available on this node",
            f"`pvesm status --storage {name}` on {node}: check that its path or pool is "
            "there and mounted",
        )
    if not entry.get("enabled", 1):
        return Check(
            "storage-active",
            Status.WARN,
            subject,
            "disabled",
            f"`pvesm set {name} --disable 0`",
        )
    used = entry.get("used_fraction")
    share = f", {float(used):.0%} used" if isinstance(used, (int, float)) else ""
    return Check("storage-active", Status.PASS, subject, f"active{share}")


_NAGIOS_STATUS = {0: Status.PASS, 1: Status.WARN, 2: Status.FAIL, 3: Status.UNKNOWN}


def snapshot_check(fresh: Freshness) -> Check:
    """One dataset's snapshot freshness (the ``snapshot --monitor`` verdict) as a check."""
    status = _NAGIOS_STATUS[fresh.status]
    fix = (
        ""
        if status is Status.PASS
        else "check the timer (`systemctl status nixmox-snapshot.timer`) and "
        "`nixmox history --job snapshot`; `nixmox snapshot` takes one now"
    )
    return Check("snapshot-fresh", status, fresh.dataset, fresh.message, fix)


# -- gathering -------------------------------------------------------------------


def _zfs_unknown(check_id: str, subject: str, exc: NixmoxError) -> Check:
    return Check(
        check_id,
        Status.UNKNOWN,
        subject,
        str(exc),
        "install zfsutils-linux, or set [zfs] command / zpool_command in the inventory",
    )


def check_storage(inv: Inventory, zfs: Zfs, zpool: Zpool, api: Proxmox | None) -> list[Check]:
    """Pools (zpool), declared datasets (one zfs list), declared storages (the API)."""
    out: list[Check] = []
    if inv.pools:
        try:
            out += pool_checks(zpool.list_pools(), inv.pools)
        except NixmoxError as exc:
            out.append(_zfs_unknown("pool-health", "zpool list", exc))
    if inv.datasets:
        try:
            out += dataset_checks(zfs.datasets(), inv.datasets)
        except NixmoxError as exc:
            out.append(_zfs_unknown("dataset-exists", "zfs list", exc))
    if inv.storages:
        out += _api_storages(inv, api)
    if not out:
        out.append(
            Check("storage-exists", Status.INFO, "storage", "no pools, datasets or storages")
        )
    return out


def _api_storages(inv: Inventory, api: Proxmox | None) -> list[Check]:
    nodes = [n.name for n in inv.nodes] or sorted({g.node for g in inv.guests})
    if api is None:
        return [
            Check(
                "storage-exists",
                Status.UNKNOWN,
                "storages",
                "the Proxmox API is not reachable",
                "see the proxmox checks",
            )
        ]
    try:
        config = api.get("/storage")
    except NixmoxError as exc:
        return [
            Check(
                "storage-exists",
                Status.UNKNOWN,
                "/storage",
                str(exc),
                "check the token's Datastore.Audit privilege",
            )
        ]
    status: dict[str, Any] = {}
    for node in nodes:
        try:
            status[node] = api.get(f"/nodes/{node}/storage")
        except NixmoxError:
            continue  # that node's storages say UNKNOWN, the others still count
    return storage_checks(config, status, inv.storages, nodes)


def check_snapshots(inv: Inventory, zfs: Zfs, now: datetime) -> list[Check]:
    """The newest nixmox snapshot of each configured dataset against its policy."""
    snaps = inv.snapshots
    if snaps is None or not snaps.datasets:
        return [
            Check("snapshot-fresh", Status.INFO, "snapshots", "no [[snapshots.datasets]] declared")
        ]
    out = []
    for target in snaps.datasets:
        policy = snaps.policies[target.policy]
        warn = None if policy.warn_after is None else parse_timedelta(policy.warn_after)
        crit = None if policy.crit_after is None else parse_timedelta(policy.crit_after)
        out.append(snapshot_check(check_freshness(zfs, target, policy, now, warn, crit)))
    return out
