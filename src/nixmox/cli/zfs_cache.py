"""`nixmox zfs cache add|remove`: L2ARC and SLOG devices, checked before zpool touches them."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path, PurePath
from typing import Any

from nixmox.adapters.runner import Runner
from nixmox.adapters.zfs import Zpool, zpool_command
from nixmox.core.errors import ConfigError, NixmoxError
from nixmox.inventory.load import DEFAULT_PATHS, load_inventory
from nixmox.inventory.model import Inventory
from nixmox.runtime.run import observed_run
from nixmox.zfs_cache import checks as zc


class NotConfirmed(NixmoxError):
    """The user did not confirm (or could not: no terminal and no --yes)."""


def _inventory(config: Path | None) -> Inventory | None:
    """The inventory if one is given or found: only for its zpool command and the journal."""
    if config is not None:
        return load_inventory(config)
    for candidate in DEFAULT_PATHS:
        if candidate.exists():
            return load_inventory(candidate)
    return None


def _zpool(inv: Inventory | None, runner: Runner) -> Zpool:
    command = ["zpool"]
    if inv is not None:
        command = zpool_command(inv.zfs.command, inv.zfs.zpool_command)
    if PurePath(command[0]).name == "ssh":
        # The device checks read /dev and /proc here: they must see the pool's host.
        raise ConfigError(
            f"[zfs] runs zpool over ssh ({shlex.join(command)}): run `nixmox zfs cache` "
            "on the host whose disks it changes"
        )
    return Zpool(runner, command)


@contextmanager
def _journal(inv: Inventory | None, words: str, dry_run: bool) -> Iterator[Any]:
    if inv is None or dry_run:
        with nullcontext(None) as nothing:
            yield nothing
        return
    with observed_run(inv, words) as run:
        yield run


def _confirm(shown: str, yes: bool, ask: Callable[[str], bool] | None) -> None:
    if yes:
        return
    if ask is None:
        if not sys.stdin.isatty():
            raise NotConfirmed(
                f"not confirmed: stdin is not a terminal; give --yes to run `{shown}`"
            )
        import typer

        ask = lambda prompt: typer.confirm(prompt, default=False)  # noqa: E731
    if not ask("Run it?"):
        raise NotConfirmed(f"not confirmed: `{shown}` was not run")


def add(
    config: Path | None,
    pool: str,
    device: str,
    *,
    slog: bool,
    mirror: str | None,
    yes: bool,
    force: bool,
    dry_run: bool,
    ask: Callable[[str], bool] | None = None,
) -> int:
    """Check the device(s), show the ``zpool add``, confirm, run, and check the result."""
    inv = _inventory(config)
    zpool = _zpool(inv, Runner(dry_run=dry_run))
    directory = zc.by_id_dir()
    devices = [device, *([mirror] if mirror else [])]
    for d in devices:
        zc.check_by_id(d, directory)
    plan = zc.plan_add(pool, devices, slog=slog)
    resolve = zc.Resolver(directory)
    vdevs = zc.parse_status(zpool.status())
    if pool not in {v.pool for v in vdevs}:
        raise zc.DeviceRefused(f"no pool named {pool}")
    mounts = zc.read_mounts()
    warnings = []
    for d in devices:
        warnings += zc.check_unused(
            d,
            vdevs=vdevs,
            mounts=mounts,
            head=zc.read_head(d),
            resolve=resolve,
            force=force,
        )
    for line in warnings:
        print(f"warning: {line}")
    shown = shlex.join([*zpool.command, *plan.argv])
    print(f"{plan.description}:\n  {shown}")
    if dry_run:
        print("dry run: nothing changed")
        return 0
    _confirm(shown, yes, ask)
    with _journal(inv, "zfs cache add", dry_run) as run:
        zpool.run_change(plan.argv, f"cannot add to {pool}")
        after = zc.find_device(
            [v for v in zc.parse_status(zpool.status()) if v.pool == pool], device, resolve
        )
        section = "logs" if slog else "cache"
        if not after or after[0].section != section:
            raise NixmoxError(
                f"zpool add ran, but {device} is not listed under {section} of {pool}"
            )
        if run is not None:
            run.result = "ok"
            run.summary = {"pool": pool, "devices": devices, "kind": section}
    print(f"{pool}: {', '.join(devices)} added under {section}")
    return 0


def remove(
    config: Path | None,
    pool: str,
    device: str,
    *,
    yes: bool,
    dry_run: bool,
    ask: Callable[[str], bool] | None = None,
) -> int:
    """Remove a cache or log device (or a mirrored log) of ``pool``; never a data vdev."""
    inv = _inventory(config)
    zpool = _zpool(inv, Runner(dry_run=dry_run))
    directory = zc.by_id_dir()
    if not zc.is_group(device):
        zc.check_by_id(device, directory)
    resolve = zc.Resolver(directory)
    plan = zc.plan_remove(pool, device, zc.parse_status(zpool.status()), resolve)
    shown = shlex.join([*zpool.command, *plan.argv])
    print(f"{plan.description}:\n  {shown}")
    if dry_run:
        print("dry run: nothing changed")
        return 0
    _confirm(shown, yes, ask)
    with _journal(inv, "zfs cache remove", dry_run) as run:
        zpool.run_change(plan.argv, f"cannot remove from {pool}")
        left = [v for v in zc.parse_status(zpool.status()) if v.pool == pool]
        gone = plan.argv[-1]
        if any(v.name == gone for v in left) or (
            not zc.is_group(gone) and zc.find_device(left, gone, resolve)
        ):
            raise NixmoxError(f"zpool remove ran, but {plan.argv[-1]} is still in {pool}")
        if run is not None:
            run.result = "ok"
            run.summary = {"pool": pool, "removed": plan.argv[-1]}
    print(f"{pool}: {plan.argv[-1]} removed")
    return 0
