"""``zfs cache add|remove``: check the devices, show the ``zpool`` change, confirm, run, verify.

:func:`prepare_add` and :func:`prepare_remove` read the pool and refuse what
must not be touched (see :mod:`nixmox.zfs_cache.checks`, the pure part);
:meth:`CacheChangePlan.confirmed` asks through the caller's
:data:`~nixmox.core.confirm.Confirm` and returns the work for
:func:`nixmox.runtime.run.run_job`, which runs ``zpool`` and checks that the
pool shows the change.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nixmox.adapters.runner import Runner
from nixmox.adapters.zfs import Zpool, zpool_command
from nixmox.core.confirm import Confirm
from nixmox.core.errors import ConfigError, NixmoxError, NotConfirmed
from nixmox.inventory.model import Inventory
from nixmox.zfs_cache import checks


def cache_zpool(inv: Inventory | None, runner: Runner) -> Zpool:
    """The ``zpool`` the inventory names (or plain ``zpool``); refused over ssh."""
    command = ["zpool"]
    if inv is not None:
        command = zpool_command(inv.zfs.command, inv.zfs.zpool_command)
    zpool = Zpool(runner, command)
    if zpool.runs_remotely:
        # The device checks read /dev and /proc here: they must see the pool's host.
        raise ConfigError(
            f"[zfs] runs zpool over ssh ({shlex.join(command)}): run `nixmox zfs cache` "
            "on the host whose disks it changes"
        )
    return zpool


@dataclass(frozen=True)
class CacheChange:
    """A done ``zfs cache add`` (``devices`` under ``kind``) or ``remove`` (``removed``)."""

    pool: str
    devices: tuple[str, ...] = ()
    kind: str | None = None  # cache | logs
    removed: str | None = None
    result: str = "ok"  # a change that did not take raises instead

    def to_json(self) -> dict[str, Any]:
        if self.removed is not None:
            return {"pool": self.pool, "removed": self.removed}
        return {"pool": self.pool, "devices": list(self.devices), "kind": self.kind}

    @property
    def line(self) -> str:
        """What changed, in one line."""
        if self.removed is not None:
            return f"{self.pool}: {self.removed} removed"
        return f"{self.pool}: {', '.join(self.devices)} added under {self.kind}"


@dataclass(frozen=True)
class CacheChangePlan:
    """A checked change, shown to the user before it runs."""

    description: str
    shown: str  # the zpool command line
    work: Callable[[], CacheChange]
    warnings: list[str] = field(default_factory=list)

    def confirmed(self, confirm: Confirm) -> Callable[[], CacheChange]:
        """The work, once ``confirm`` said yes; :class:`NotConfirmed` otherwise."""
        refusal = f"not confirmed: stdin is not a terminal; give --yes to run `{self.shown}`"
        if not confirm("Run it?", refusal):
            raise NotConfirmed(f"not confirmed: `{self.shown}` was not run")
        return self.work


def prepare_add(
    inv: Inventory | None,
    pool: str,
    device: str,
    *,
    slog: bool,
    mirror: str | None,
    force: bool,
    dry_run: bool,
) -> CacheChangePlan:
    """Check the device(s) and plan the ``zpool add``."""
    zpool = cache_zpool(inv, Runner(dry_run=dry_run))
    directory = checks.by_id_dir()
    devices = [device, *([mirror] if mirror else [])]
    for d in devices:
        checks.check_by_id(d, directory)
    plan = checks.plan_add(pool, devices, slog=slog)
    resolve = checks.Resolver(directory)
    vdevs = checks.parse_status(zpool.status())
    if pool not in {v.pool for v in vdevs}:
        raise checks.DeviceRefused(f"no pool named {pool}")
    mounts = checks.read_mounts()
    warnings = []
    for d in devices:
        warnings += checks.check_unused(
            d,
            vdevs=vdevs,
            mounts=mounts,
            head=checks.read_head(d),
            resolve=resolve,
            force=force,
        )
    section = "logs" if slog else "cache"

    def add() -> CacheChange:
        zpool.run_change(plan.argv, f"cannot add to {pool}")
        after = checks.find_device(
            [v for v in checks.parse_status(zpool.status()) if v.pool == pool], device, resolve
        )
        if not after or after[0].section != section:
            raise NixmoxError(
                f"zpool add ran, but {device} is not listed under {section} of {pool}"
            )
        return CacheChange(pool, tuple(devices), kind=section)

    shown = shlex.join([*zpool.command, *plan.argv])
    return CacheChangePlan(plan.description, shown, add, warnings)


def prepare_remove(
    inv: Inventory | None, pool: str, device: str, *, dry_run: bool
) -> CacheChangePlan:
    """Plan the removal of a cache or log device (or a mirrored log); never a data vdev."""
    zpool = cache_zpool(inv, Runner(dry_run=dry_run))
    directory = checks.by_id_dir()
    if not checks.is_group(device):
        checks.check_by_id(device, directory)
    resolve = checks.Resolver(directory)
    plan = checks.plan_remove(pool, device, checks.parse_status(zpool.status()), resolve)
    gone = plan.argv[-1]

    def remove() -> CacheChange:
        zpool.run_change(plan.argv, f"cannot remove from {pool}")
        left = [v for v in checks.parse_status(zpool.status()) if v.pool == pool]
        if any(v.name == gone for v in left) or (
            not checks.is_group(gone) and checks.find_device(left, gone, resolve)
        ):
            raise NixmoxError(f"zpool remove ran, but {gone} is still in {pool}")
        return CacheChange(pool, removed=gone)

    shown = shlex.join([*zpool.command, *plan.argv])
    return CacheChangePlan(plan.description, shown, remove)
