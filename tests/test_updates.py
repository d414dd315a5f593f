"""The pieces every update shares: guest snapshots through the API, the agent client
through the API, the outcome shape status and metrics read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from nixmox.adapters.guest_agent import AgentError
from nixmox.adapters.guest_agent.via_api import ApiAgent
from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.settings import connection
from nixmox.core.errors import NixmoxError
from nixmox.inventory.model import ProxmoxSettings
from nixmox.rules.retention import Keep
from nixmox.updates.guest_snapshots import (
    GuestSnapshots,
    snapshots_to_prune,
    update_snapshot_name,
    update_snapshot_time,
)
from nixmox.updates.outcome import UpdateOutcome, exit_code, run_result, summary
from tests.lab.serving import RunningLab

VIENNA = ZoneInfo("Europe/Vienna")


def _api(lab: RunningLab) -> Proxmox:
    return Proxmox(connection(ProxmoxSettings(), lab.env))


def test_names_round_trip_and_foreign_names_are_not_ours() -> None:
    at = datetime(2026, 11, 25, 19, 3, 4, tzinfo=UTC)
    assert update_snapshot_name(at, "0a9f") == "nixmox_update_20261125T190304Z_0a9f"
    name = update_snapshot_name(at)
    assert len(name) <= 40  # Proxmox's limit for snapshot names
    assert update_snapshot_time(name) == at
    # Earlier versions named them without the suffix: still nixmox's, still pruned.
    assert update_snapshot_time("nixmox_update_20261125T190304Z") == at
    for foreign in (
        "before-upgrade",
        "nixmox_2026-11-25T19:03:04Z",
        "nixmox_update_20261399T000000Z",
        "nixmox_update_20261125T190304Z_mine",
        "nixmox_update_20261125T190304Z_0a9f_copy",
    ):
        assert update_snapshot_time(foreign) is None
    with pytest.raises(ValueError, match="four hex digits"):
        update_snapshot_name(at, "x")


def test_two_snapshots_in_the_same_second_get_two_names() -> None:
    at = datetime(2026, 11, 25, 19, 3, 4, tzinfo=UTC)
    names = {update_snapshot_name(at) for _ in range(20)}
    assert len(names) > 1
    assert {update_snapshot_time(n) for n in names} == {at}


def test_prune_only_touches_nixmox_update_snapshots() -> None:
    start = datetime(2026, 11, 1, 3, 30, tzinfo=UTC)
    ours = [update_snapshot_name(start + timedelta(days=d)) for d in range(6)]
    names = ["manual", "autosnap_2026-11-01", *ours]
    doomed = snapshots_to_prune(names, Keep(last=3), VIENNA)
    assert sorted(doomed) == sorted(ours[:3])
    assert "manual" not in doomed


@pytest.mark.parametrize("kind", ["qemu", "lxc"])
def test_take_rollback_delete_prune_in_the_lab(lab: RunningLab, kind: str) -> None:
    guests = {g.vmid: g for g in lab.pve.add_declared_guests()}
    vmid = 101 if kind == "qemu" else 100
    api = _api(lab)
    snaps = GuestSnapshots(api, guests[vmid].node, kind, vmid)
    start = datetime(2026, 11, 1, 3, 30, tzinfo=UTC)
    made = [update_snapshot_name(start + timedelta(days=d)) for d in range(4)]
    for name in made:
        snaps.take(name)
    assert set(made) <= set(snaps.names())
    path = f"/nodes/{guests[vmid].node}/{kind}/{vmid}/config"
    before = api.get(path)["cores"]
    api.put(path, cores=int(before) + 2)
    snaps.rollback(made[-1])
    assert int(api.get(path)["cores"]) == int(before)
    assert sorted(snaps.prune(Keep(last=2), VIENNA)) == sorted(made[:2])
    assert set(snaps.names()) == set(made[2:])
    with pytest.raises(ValueError, match="did not take it"):
        snaps.delete("manual")


def test_agent_exec_and_files_through_the_api(lab: RunningLab) -> None:
    lab.pve.add_declared_guests()
    vm = lab.pve.find("pve1", 102)
    vm.status = "running"
    vm.agent = {"exec": {"cmd /c ver": {"exitcode": 0, "out-data": "Microsoft Windows"}}}
    agent = ApiAgent(_api(lab), "pve1", 102)
    agent.ping()
    result = agent.exec(["cmd", "/c", "ver"])
    assert result.ok and result.stdout == "Microsoft Windows"
    agent.file_write("C:\\nixmox\\a.ps1", "Write-Output 1")
    assert ("file-write", {"file": "C:\\nixmox\\a.ps1", "content": "Write-Output 1"}) in [
        (c, {k: v for k, v in a.items() if k in ("file", "content")}) for c, a in vm.agent_requests
    ]
    vm.agent = None
    with pytest.raises(AgentError, match="does not answer"):
        agent.ping()


def test_outcome_summary_shape_and_exit_codes() -> None:
    ok = UpdateOutcome("nixos-lxc", 100, "ok")
    held = UpdateOutcome("win11-gaming", 102, "held", pending=1)
    back = UpdateOutcome("nixos-vm", 101, "rolled-back", rolled_back=True, rollback="generation 41")
    assert exit_code([ok, held]) == 0 and run_result([ok, held]) == "ok"
    assert exit_code([ok, back]) == 1 and run_result([ok, back]) == "failed"
    s = summary([ok, held, back])
    assert s["pending"] == {"win11-gaming": 1}
    assert [g["rolled_back"] for g in s["guests"]] == [False, False, True]  # type: ignore[index]


@pytest.mark.parametrize("kind", ["qemu", "lxc"])
def test_the_lab_refuses_a_rollback_past_a_newer_zfs_snapshot(lab: RunningLab, kind: str) -> None:
    """As PVE's ZFS plugin does (issue 24, item 3): an hourly ZFS snapshot of the dataset
    behind a guest disk makes every older guest snapshot impossible to roll back, which
    is why config check refuses snapshot policies on such datasets."""
    guests = {g.vmid: g for g in lab.pve.add_declared_guests()}
    vmid = 101 if kind == "qemu" else 100
    snaps = GuestSnapshots(_api(lab), guests[vmid].node, kind, vmid)
    first = update_snapshot_name(datetime(2026, 11, 1, 3, 30, tzinfo=UTC))
    snaps.take(first)
    snaps.rollback(first)  # the newest snapshot on the volume: allowed
    volumes = lab.pve._zfs_volumes(lab.pve.guest(vmid))
    assert volumes, "the example's guest disks sit on the zfspool storages"
    lab.pve.zfs_snapshot(volumes[0], when=lab.pve.now() + 60)
    with pytest.raises(NixmoxError, match="is not most recent snapshot"):
        snaps.rollback(first)
