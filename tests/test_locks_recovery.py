"""The newer jobs lock what they touch: replicate, snapshot rollback/clone, restore and rebuild
queue behind a run on the same dataset tree, guest or infrastructure, and never behind an
unrelated one."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from nixmox.adapters.locks import Claim, LockSet, dataset_claims, guest_claims, node_claims
from nixmox.backup.runs import backup_claims
from nixmox.core.clock import SYSTEM_CLOCK
from nixmox.core.errors import LockBusy
from nixmox.inventory.load import load_inventory
from nixmox.inventory.model import Inventory
from nixmox.provision.diff import ObjectPlan, Plan
from nixmox.provision.run import INFRASTRUCTURE
from nixmox.replicate.runs import replicate_claims
from nixmox.restore.job import RestoreOptions
from nixmox.restore.rebuild import GuestRecovery, RebuildRun
from nixmox.restore.runs import RestoreRun
from nixmox.snapshot.runs import recovery_claims, snapshot_claims
from tests.lab.serving import RunningLab

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "homelab.toml"


@pytest.fixture
def inv() -> Inventory:
    return load_inventory(EXAMPLE)


def _conflict(state: Path, held: Iterable[Claim], wanted: Iterable[Claim]) -> bool:
    """Whether a run wanting ``wanted`` must wait while another holds ``held``
    (real flocks: a second LockSet in this process waits like another process)."""
    holder = LockSet(state, "first")
    holder.acquire(list(held), wait=0)
    waiter = LockSet(state, "second")
    try:
        waiter.acquire(list(wanted), wait=0)
    except LockBusy:
        return True
    finally:
        holder.release()
    waiter.release()
    return False


def test_replicate_queues_behind_a_snapshot_of_its_tree_but_not_a_backup(
    inv: Inventory, tmp_path: Path
) -> None:
    claims = replicate_claims(inv)
    # The snapshot run prunes the very snapshots replicate sends.
    assert _conflict(tmp_path, snapshot_claims(inv), claims)
    assert not _conflict(tmp_path, backup_claims(inv, []), claims)
    # A second replicate of the same target waits too, a run on another pool does not.
    assert _conflict(tmp_path, dataset_claims(["usb/pve"]), claims)
    assert not _conflict(tmp_path, dataset_claims(["rpool/data/vm"]), claims)
    # The remote target is a tree of its own host, not this machine's backup/pve1.
    assert not _conflict(tmp_path, dataset_claims(["backup/pve1"]), claims)
    assert _conflict(tmp_path, dataset_claims(["root@nas.home.arpa:backup/pve1"]), claims)


def test_rollback_and_clone_lock_the_tree_and_the_guest_whose_disk_it_is(
    inv: Inventory, tmp_path: Path
) -> None:
    shared = recovery_claims(inv, "tank/shared/docs@nixmox-x")
    assert _conflict(tmp_path, snapshot_claims(inv), shared)  # tank/shared is an ancestor
    assert not _conflict(tmp_path, dataset_claims(["rpool/data"]), shared)
    assert not _conflict(tmp_path, backup_claims(inv, []), shared)
    disk = recovery_claims(inv, "rpool/data/vm/vm-101-disk-0@before")
    # Rolling back a guest's disk may stop the guest: its backup waits, another guest's not.
    assert _conflict(tmp_path, backup_claims(inv, ["nixos-vm"]), disk)
    assert not _conflict(tmp_path, backup_claims(inv, ["nixos-lxc"]), disk)


def _restore(inv: Inventory, name: str, as_vmid: int | None = None) -> RestoreRun:
    guest = next(g for g in inv.guests if g.name == name)
    api: Any = None  # claims read the inventory only
    return RestoreRun(inv, guest, api, [], None, RestoreOptions(as_vmid=as_vmid), SYSTEM_CLOCK)


def test_restore_locks_the_guest_it_restores_to(inv: Inventory, tmp_path: Path) -> None:
    in_place = _restore(inv, "nixos-vm").claims
    assert _conflict(tmp_path, backup_claims(inv, ["nixos-vm"]), in_place)
    assert not _conflict(tmp_path, backup_claims(inv, ["nixos-lxc"]), in_place)
    assert not _conflict(tmp_path, snapshot_claims(inv), in_place)
    # A host update of its node holds off every run on a guest there.
    assert _conflict(tmp_path, node_claims(["pve1"]), in_place)
    # As a copy: the original may be backed up meanwhile, the new VMID is the restore's.
    copy = _restore(inv, "nixos-vm", as_vmid=9101).claims
    assert not _conflict(tmp_path, backup_claims(inv, ["nixos-vm"]), copy)
    assert _conflict(tmp_path, guest_claims([(9101, "pve1")]), copy)


def _rebuild(inv: Inventory, actions: dict[str, Any], infra: tuple[ObjectPlan, ...]) -> RebuildRun:
    api: Any = None
    plan = Plan(guests=(), bridges=infra, storages=(), unmanaged=())
    guests = [GuestRecovery(g.name, g.vmid, actions.get(g.name, "leave")) for g in inv.guests]
    return RebuildRun(inv, api, plan, guests, False, False, Path("/"), Path("/"))


def test_rebuild_locks_its_guests_and_the_infrastructure_it_changes(
    inv: Inventory, tmp_path: Path
) -> None:
    bridge = ObjectPlan("bridge", "vmbr1", "pve1", "create")
    run = _rebuild(inv, {"nixos-vm": "restore"}, (bridge,))
    assert _conflict(tmp_path, [INFRASTRUCTURE], run.claims)  # an apply runs
    assert _conflict(tmp_path, backup_claims(inv, ["nixos-vm"]), run.claims)
    # A guest it leaves as it is, and a snapshot run, go on.
    assert not _conflict(tmp_path, backup_claims(inv, ["nixos-lxc"]), run.claims)
    assert not _conflict(tmp_path, snapshot_claims(inv), run.claims)
    # No infrastructure change: an apply of other guests does not wait for it.
    quiet = _rebuild(inv, {"nixos-vm": "restore"}, ())
    assert not _conflict(tmp_path, [INFRASTRUCTURE], quiet.claims)


def test_a_rollback_waits_for_a_snapshot_run_of_its_tree_and_says_so(
    lab: RunningLab, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    holder = LockSet(state, "snapshot")
    holder.acquire(snapshot_claims(load_inventory(EXAMPLE)), wait=0)
    env = {k: v for k, v in os.environ.items() if k not in lab.env}
    env.update(lab.env)
    env.update(
        {"NIXMOX_STATE_DIR": str(state), "NIXMOX_LOCK_WAIT": "1s", "PYTHONPATH": str(ROOT / "src")}
    )
    args = ["snapshot", "rollback", "--yes", "--config", str(EXAMPLE), "tank/shared@nixmox-x"]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "nixmox.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        holder.release()
    assert done.returncode == 1, done.stderr
    assert "dataset tree tank/shared is in use by PID" in done.stderr, done.stderr
    assert "nixmox snapshot" in done.stderr and "Traceback" not in done.stderr
