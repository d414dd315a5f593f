"""The update jobs' privileges preflight: pure needs, and a refusal before anything changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from nixmox.adapters.proxmox.permissions import check, grant
from nixmox.cli.main import run
from nixmox.inventory.load import load_inventory
from nixmox.updates.privileges import AGENT_EXEC, host_needs, nixos_needs, windows_needs
from tests.lab.serving import RunningLab

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "homelab.toml"
INV = load_inventory(EXAMPLE)
TOKEN = "nixmox@pve!limited"


def _privs(needs: list) -> set[tuple[str, str]]:  # type: ignore[type-arg]
    return {(n.path, n.privilege) for n in needs}


def test_nixos_needs_the_agent_only_where_it_is_the_way_in() -> None:
    lxc, vm = INV.guest("nixos-lxc"), INV.guest("nixos-vm")
    assert ("/vms/100", "VM.Snapshot|VM.Snapshot.Rollback") in _privs(nixos_needs(lxc))
    assert not any("GuestAgent" in p for _, p in _privs(nixos_needs(lxc)))  # over ssh
    assert ("/vms/101", AGENT_EXEC) in _privs(nixos_needs(vm))
    # Both have reboot policy "allowed": a new kernel may be rebooted into.
    assert ("/vms/101", "VM.PowerMgmt") in _privs(nixos_needs(vm))


def test_windows_needs_snapshots_and_the_agent() -> None:
    privs = {p for _, p in _privs(windows_needs(INV.guest("win11-gaming")))}
    assert {"VM.Snapshot", "VM.Snapshot|VM.Snapshot.Rollback", AGENT_EXEC} <= privs
    # The grant for them: VM.Snapshot covers the rollback too (its endpoint takes either).
    given = grant(windows_needs(INV.guest("win11-gaming")))
    held = {p for privs in given.roles.values() for p in privs}
    assert "VM.Snapshot" in held and "VM.Snapshot.Rollback" not in held


def test_a_node_that_may_reboot_needs_power_and_migration_rights() -> None:
    node = INV.nodes[0]  # reboot = "window"
    privs = _privs(host_needs(node, INV.guests))
    assert ("/nodes/pve1", "Sys.PowerMgmt") in privs
    assert {("/vms/100", "VM.Migrate"), ("/vms/102", "VM.Migrate")} <= privs
    assert ("/vms/100", "VM.Audit") in privs  # a guest the token cannot see is never moved
    never = node.model_copy(update={"reboot": "never"})
    assert _privs(host_needs(never, INV.guests)) == {
        ("/nodes/pve1", "Sys.Audit"),
        ("/nodes/pve1", "Sys.Modify"),
    }


@pytest.mark.parametrize("granted", ["VM.GuestAgent.Unrestricted", "VM.Monitor"])
def test_pve8_and_pve9_names_of_the_agent_right_both_count(granted: str) -> None:
    needs = [n for n in windows_needs(INV.guest("win11-gaming")) if "GuestAgent" in n.privilege]
    assert check(needs, {"/vms/102": {granted: 1}}, TOKEN) == []
    assert len(check(needs, {"/vms/102": {"VM.Audit": 1}}, TOKEN)) == len(needs)


@pytest.fixture
def limited(lab_env: RunningLab, monkeypatch: pytest.MonkeyPatch) -> RunningLab:
    lab = lab_env
    lab.pve.add_declared_guests()
    lab.pve.find("pve1", 102).status = "running"
    lab.pve.apitokens[TOKEN] = "limited-secret-1234"
    for who in (TOKEN.split("!")[0], TOKEN):  # a privilege-separated token and its user
        lab.pve.grant(who, "/", "VM.Audit", "Sys.Audit", "Datastore.Audit")
    monkeypatch.setenv("NIXMOX_PVE_TOKEN_ID", TOKEN)
    monkeypatch.setenv("NIXMOX_PVE_TOKEN", "limited-secret-1234")
    return lab


def test_update_windows_refuses_one_line_per_privilege_before_touching_the_guest(
    limited: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    vm = limited.pve.find("pve1", 102)
    vm.agent = {}
    assert run(["update", "windows", "--config", str(EXAMPLE)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "nothing was changed" in err[0]
    missing = [line.removeprefix("nixmox: ") for line in err[1:]]
    assert "missing: VM.Snapshot on /vms/102 (snapshot win11-gaming before its update)" in missing
    assert all(line.startswith("missing: ") for line in missing) and len(missing) >= 4
    assert vm.snapshots == {} and vm.agent_requests == []


def test_update_host_refuses_without_the_right_to_refresh_apt(
    limited: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["update", "host", "--config", str(EXAMPLE)]) == 1
    err = capsys.readouterr().err
    assert "Sys.Modify on /nodes/pve1 (refresh pve1's package lists (apt update))" in err
    assert limited.pve.apt_refreshes == 0


def test_a_single_node_asks_for_no_migration_rights() -> None:
    # With no other node, update host stops the guests (never migrates them).
    node = INV.nodes[0]
    privs = _privs(host_needs(node, INV.guests, migrate=False))
    assert not {p for _, p in privs if p == "VM.Migrate"}
    assert ("/vms/100", "VM.PowerMgmt") in privs and ("/nodes/pve1", "Sys.PowerMgmt") in privs
