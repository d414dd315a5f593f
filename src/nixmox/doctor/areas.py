"""Running doctor's areas: which need the API, and one UNKNOWN per area that breaks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from nixmox.adapters.proxmox.client import Proxmox, ReadOnce
from nixmox.core.errors import NixmoxError
from nixmox.core.verdict import Check, Status
from nixmox.inventory.model import Inventory

#: Every area, in the order they run.
AREAS = (
    "proxmox",
    "guests",
    "host",
    "passthrough",
    "storage",
    "pools",
    "snapshots",
    "replication",
    "backups",
)
#: Areas that read the Proxmox API (passthrough and storage cross-check with it).
API_AREAS = ("proxmox", "guests", "passthrough", "storage", "backups")
#: Areas about the host itself (its files and ZFS): they judge the machine doctor
#: runs on, so they run on a declared node or with --host-root, nowhere else.
HOST_AREAS = ("host", "passthrough", "storage", "pools", "snapshots", "replication")


def host_areas_apply(inv: Inventory, host_root: Path | None) -> bool:
    """Whether the host-side areas judge the right machine: --host-root given,
    or this machine is one of the inventory's nodes."""
    from nixmox.updates.nodes import this_host

    if host_root is not None:
        return True
    return this_host() in {n.name for n in inv.nodes}


def skipped_host_areas(inv: Inventory, areas: list[str]) -> list[Check]:
    """One INFO line saying which host areas were not run here, and why."""
    from nixmox.updates.nodes import this_host

    skipped = [a for a in areas if a in HOST_AREAS]
    if not skipped:
        return []
    nodes = ", ".join(n.name for n in inv.nodes) or "none declared"
    return [
        Check(
            "host-areas",
            Status.INFO,
            this_host(),
            f"not a declared node ({nodes}): {', '.join(skipped)} skipped, "
            "since they would judge this machine instead of the node",
            "run doctor on the node, or pass --host-root DIR with a copy of its files",
        )
    ]


def run_areas(inv: Inventory, areas: list[str], host_root: Path | None) -> list[Check]:
    """The checks of ``areas``: the API is contacted only if an area uses it,
    and read once (``ReadOnce``) however many areas ask for the same thing.
    Without ``host_root`` off a declared node, the host areas are skipped (one INFO)."""
    from nixmox.doctor.proxmox_area import check_proxmox, check_token_privileges

    checks: list[Check] = []
    if not host_areas_apply(inv, host_root):
        checks += skipped_host_areas(inv, areas)
        areas = [a for a in areas if a not in HOST_AREAS]
    api: Proxmox | None = None
    if any(a in API_AREAS for a in areas):
        proxmox_checks, plain = check_proxmox(inv)
        api = ReadOnce(plain) if plain is not None else None
        if "proxmox" in areas:
            checks += proxmox_checks
            if api is not None:
                checks += check_token_privileges(inv, api)
    rest = [a for a in areas if a != "proxmox"]
    return checks + area_checks(inv, rest, host_root or Path("/"), api)


def area_checks(
    inv: Inventory, areas: list[str], host_root: Path, api: Proxmox | None
) -> list[Check]:
    """The checks of ``areas`` (not ``proxmox``); an area that breaks says UNKNOWN,
    the others still run."""
    checks: list[Check] = []
    for area in areas:
        try:
            checks += _AREA_RUNNERS[area](inv, api, host_root)
        except NixmoxError as exc:
            checks.append(
                Check(
                    f"{area}-area",
                    Status.UNKNOWN,
                    area,
                    str(exc),
                    f"run `nixmox -vv doctor --only {area}` for details",
                )
            )
    return checks


def _guests(inv: Inventory, api: Proxmox | None, host_root: Path) -> list[Check]:
    from nixmox.doctor.proxmox_area import check_guests

    if api is None:
        return [
            Check(
                "guest-exists",
                Status.UNKNOWN,
                "guests",
                "the Proxmox API is not reachable",
                "see the proxmox checks",
            )
        ]
    return check_guests(inv, api)


def _host(inv: Inventory, api: Proxmox | None, host_root: Path) -> list[Check]:
    from nixmox.doctor.host_area import check_host

    return check_host(inv, host_root)


def _passthrough(inv: Inventory, api: Proxmox | None, host_root: Path) -> list[Check]:
    from nixmox.passthrough.checks import check_passthrough

    return check_passthrough(inv, host_root, api)


def _storage(inv: Inventory, api: Proxmox | None, host_root: Path) -> list[Check]:
    from nixmox.adapters.runner import Runner
    from nixmox.adapters.zfs import Zfs, Zpool, zpool_command
    from nixmox.doctor.storage_area import check_storage

    runner = Runner()
    zpool = Zpool(runner, zpool_command(inv.zfs.command, inv.zfs.zpool_command))
    return check_storage(inv, Zfs(runner, inv.zfs.command), zpool, api)


def _pools(inv: Inventory, api: Proxmox | None, host_root: Path) -> list[Check]:
    from nixmox.adapters.runner import Runner
    from nixmox.pool.runs import declared_pools, journal_history, read_health

    pools = declared_pools(inv)
    if not pools:
        return [
            Check(
                "pool-vdev",
                Status.INFO,
                "pools",
                "no [[pools]] declared (`nixmox pool check` reads every imported pool)",
            )
        ]
    # Compared with the journaled readings of `pool check` (SMART growth, the forecast).
    report = read_health(inv, Runner(), journal_history(), datetime.now(UTC), pools=pools)
    return list(report.checks)


def _snapshots(inv: Inventory, api: Proxmox | None, host_root: Path) -> list[Check]:
    from nixmox.adapters.runner import Runner
    from nixmox.adapters.zfs import Zfs
    from nixmox.doctor.storage_area import check_snapshots

    return check_snapshots(inv, Zfs(Runner(), inv.zfs.command), datetime.now(UTC))


def _replication(inv: Inventory, api: Proxmox | None, host_root: Path) -> list[Check]:
    from nixmox.adapters.runner import Runner
    from nixmox.adapters.zfs import Zfs
    from nixmox.doctor.replication_area import check_replication

    return check_replication(inv, Zfs(Runner(), inv.zfs.command), datetime.now(UTC))


def _backups(inv: Inventory, api: Proxmox | None, host_root: Path) -> list[Check]:
    from nixmox.doctor.backups_area import check_backups

    return check_backups(inv, api)


_AREA_RUNNERS: dict[str, Callable[[Inventory, Proxmox | None, Path], list[Check]]] = {
    "guests": _guests,
    "host": _host,
    "passthrough": _passthrough,
    "storage": _storage,
    "pools": _pools,
    "snapshots": _snapshots,
    "replication": _replication,
    "backups": _backups,
}
