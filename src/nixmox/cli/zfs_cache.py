"""`nixmox zfs cache add|remove`: L2ARC and SLOG devices, checked before zpool touches them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nixmox.adapters.locks import dataset_claims
from nixmox.cli.prompt import confirmer
from nixmox.inventory.load import DEFAULT_PATHS, load_inventory
from nixmox.inventory.model import Inventory
from nixmox.runtime.run import run_job
from nixmox.zfs_cache.job import CacheChangePlan, prepare_add, prepare_remove


def _inventory(config: Path | None) -> Inventory | None:
    """The inventory if one is given or found: only for its zpool command and the journal."""
    if config is not None:
        return load_inventory(config)
    for candidate in DEFAULT_PATHS:
        if candidate.exists():
            return load_inventory(candidate)
    return None


def _show_and_run(
    inv: Inventory | None,
    job: str,
    pool: str,
    plan: CacheChangePlan,
    *,
    yes: bool,
    dry_run: bool,
    ask: Callable[[str], bool] | None,
) -> int:
    for line in plan.warnings:
        print(f"warning: {line}")
    print(f"{plan.description}:\n  {plan.shown}")
    if dry_run:
        print("dry run: nothing changed")
        return 0
    work = plan.confirmed(confirmer(yes, ask))
    # The pool's whole dataset tree: a snapshot run waits for the vdev change.
    change = run_job(inv, job, work, dry_run=False, claims=dataset_claims([pool]))
    print(change.line)
    return 0


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
    plan = prepare_add(inv, pool, device, slog=slog, mirror=mirror, force=force, dry_run=dry_run)
    return _show_and_run(inv, "zfs cache add", pool, plan, yes=yes, dry_run=dry_run, ask=ask)


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
    plan = prepare_remove(inv, pool, device, dry_run=dry_run)
    return _show_and_run(inv, "zfs cache remove", pool, plan, yes=yes, dry_run=dry_run, ask=ask)
