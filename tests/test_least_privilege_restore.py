"""Least privilege for restore and rebuild, against the lab (its restores check what
PVE's create_vm checks: tests/lab/access.py).

The three cases of tests/test_least_privilege.py: no privileges, refused before
any write, naming them; exactly the grant nixmox derives, success without one
refusal and every privilege used (the converge's are contingent: it writes only
the keys the archive has otherwise than the inventory); each privilege of that
grant removed alone, stopped at the preflight naming it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nixmox.adapters.proxmox.permissions import grant
from nixmox.cli.main import run
from nixmox.inventory.load import load_inventory
from nixmox.restore.privileges import converge_needs, restore_needs
from tests.hosts import write_host
from tests.lab.serving import RunningLab
from tests.test_least_privilege import (
    TOKEN,
    Acl,
    backed_up,
    check_job,
    lab_token,  # noqa: F401  (a fixture)
    parse_grant,
    printed_grant,
)
from tests.test_least_privilege_jobs import without_guests


def restores_of(lab: RunningLab, kind: str) -> int:
    """How many restores (create calls) the lab answered with 200 so far."""
    return sum(
        1
        for m, p, st in lab.pve.answers
        if m == "POST" and p.endswith(f"/pve1/{kind}") and st == 200
    )


def contingent(config: Path, name: str, acl: Acl) -> frozenset[tuple[str, str]]:
    """The converge's privileges that no other step of the run takes."""
    guest = next(g for g in load_inventory(config).guests if g.name == name)
    held = {(p, x) for p, _r, ps in acl for x in ps}
    others = {"/sdn/zones/localnetwork/vmbr0", "/storage/vm-disks", "/storage/ct-disks"}
    return frozenset(
        (n.path, n.privilege)
        for n in converge_needs(guest)
        if (n.path, n.privilege) in held and n.path not in others
    )


def test_restore_in_place_of_a_running_vm_needs_exactly_what_it_prints(
    lab_token: RunningLab,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    lab = lab_token
    config = without_guests(tmp_path, "win11-gaming", "nixos-lxc")
    backed_up(lab, capsys, config)
    vm = lab.pve.find("pve1", 101)
    vm.status = "running"
    acl = printed_grant(lab, capsys, monkeypatch, "restore", config)
    privs = {(p, x) for p, _r, ps in acl for x in ps}
    # Over a VM that exists VM.Backup is enough (force): never VM.Allocate on it.
    assert ("/vms/101", "VM.Backup") in privs and ("/vms/101", "VM.Allocate") not in privs
    assert ("/vms/101", "VM.PowerMgmt") in privs  # the shutdown, the start
    # The storage keeps everything: the keep needs no Datastore.Allocate to say so.
    assert not any(x == "Datastore.Allocate" for _p, x in privs)
    before = restores_of(lab, "qemu")
    argv = ["restore", "nixos-vm", "--yes", "--config", str(config)]
    check_job(
        lab,
        capsys,
        acl,
        argv,
        lambda: restores_of(lab, "qemu") > before,
        contingent(config, "nixos-vm", acl),
    )
    assert lab.pve.find("pve1", 101).status == "running"


def test_restore_as_a_copy_needs_exactly_what_it_derives(
    lab_token: RunningLab,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab = lab_token
    config = without_guests(tmp_path, "win11-gaming", "nixos-lxc")
    backed_up(lab, capsys, config)
    inv = load_inventory(config)
    guest = next(g for g in inv.guests if g.name == "nixos-vm")
    assert inv.backups is not None
    # --as has no role of its own in `nixmox token` (the VMID is the user's choice):
    # the grant is the preflight's needs through the same pveum lines.
    needs = restore_needs(
        guest, inv.backups, 9101, exists=False, running=False, keep_all_param=False
    )
    acl = parse_grant(grant(needs).commands(TOKEN))
    privs = {(p, x) for p, _r, ps in acl for x in ps}
    assert ("/vms/9101", "VM.Allocate") in privs and ("/vms/101", "VM.Backup") in privs
    assert ("/nodes/pve1", "Sys.Audit") in privs  # its memory, before the copy starts
    assert not any(p == "/vms/101" and x != "VM.Backup" for p, x in privs)
    monkeypatch.setenv("NIXMOX_PVE_TOKEN_ID", TOKEN)
    monkeypatch.setenv("NIXMOX_PVE_TOKEN", "least-privilege-secret-1")
    argv = ["restore", "nixos-vm", "--as", "9101", "--yes", "--config", str(config)]
    check_job(lab, capsys, acl, argv, lambda: lab.pve.guest(9101) is not None)
    copy = lab.pve.guest(9101)
    assert copy is not None and "link_down=1" in str(copy.config.get("net0"))


def test_rebuild_of_a_lost_vm_needs_exactly_what_it_prints(
    lab_token: RunningLab,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    lab = lab_token
    config = without_guests(tmp_path, "win11-gaming")
    host = write_host(tmp_path / "host")
    lab.pve.acl = None
    for key, value in lab.root_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("NIXMOX_PVE_TOKEN_ID", raising=False)
    argv = ["apply", "--yes", "--host-root", str(host), "--config", str(config)]
    assert run(argv) == 0, capsys.readouterr()
    backed_up(lab, capsys, config)
    # The VM is lost (its disk died): destroyed through the API.
    lab.pve.vms.remove(lab.pve.find("pve1", 101))
    acl = printed_grant(lab, capsys, monkeypatch, "rebuild", config)
    privs = {(p, x) for p, _r, ps in acl for x in ps}
    assert ("/vms/101", "VM.Allocate") in privs and ("/vms/100", "VM.Audit") in privs
    # The container is there and left alone: nothing to write on it.
    assert not any(p == "/vms/100" and x not in ("VM.Audit",) for p, x in privs)
    argv = ["rebuild", "--host-root", str(host), "--config", str(config)]
    check_job(
        lab,
        capsys,
        acl,
        argv,
        lambda: lab.pve.guest(101) is not None,
        contingent(config, "nixos-vm", acl),
    )


def test_the_lab_checks_a_restore_as_pve_does_before_it_overwrites_anything(
    lab_token: RunningLab,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """qemu-server create_vm: VM.Backup alone restores over an existing VM (force), and
    every storage a disk goes to needs Datastore.AllocateSpace, checked before the VM
    there is destroyed."""
    from nixmox.adapters.proxmox.client import ApiError, Proxmox
    from nixmox.adapters.proxmox.settings import Connection
    from nixmox.adapters.proxmox.tasks import wait

    lab = lab_token
    config = without_guests(tmp_path, "win11-gaming", "nixos-lxc")
    backed_up(lab, capsys, config)
    (volid,) = [f"backups:{v}" for v in lab.pve.backups("backups", 101)]
    api = Proxmox(Connection(lab.url, TOKEN, "least-privilege-secret-1", lab.ca_file))
    lab.pve.acl = {}
    for who in (TOKEN.split("!")[0], TOKEN):
        lab.pve.grant(who, "/vms/101", "VM.Backup", "VM.Audit")
        lab.pve.grant(who, "/sdn/zones/localnetwork/vmbr0", "SDN.Use")
    with pytest.raises(ApiError) as refused:
        api.post("/nodes/pve1/qemu", vmid=101, archive=volid, force=1)
    assert refused.value.status == 403 and "vm-disks" in str(refused.value)
    assert lab.pve.guest(101) is not None  # nothing overwritten
    for who in (TOKEN.split("!")[0], TOKEN):
        lab.pve.grant(who, "/storage/vm-disks", "Datastore.AllocateSpace")
    lab.pve.find("pve1", 101).status = "stopped"
    wait(api, api.post("/nodes/pve1/qemu", vmid=101, archive=volid, force=1))
    assert ("/vms/101", "VM.Allocate") not in {(p, x) for _w, p, x in lab.pve.used}
