"""Least privilege for the jobs beyond apply and backup, against the lab.

The same three cases as tests/test_least_privilege.py (no privileges: refused
before any write, naming them; exactly the grant `nixmox token --job JOB`
prints: success, no refusal, every privilege used; each privilege removed
alone: stopped at the preflight naming it), for backup verify, windows
provision and template upload.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.lab.serving import RunningLab
from tests.test_least_privilege import (
    EXAMPLE,
    backed_up,
    check_job,
    lab_token,  # noqa: F401  (a fixture)
    printed_grant,
)
from tests.windows_guest import WindowsGuest


def without_guests(tmp_path: Path, *names: str) -> Path:
    """The example without the named guests (each `[[guests]]` block up to the next one)."""
    text = EXAMPLE.read_text()
    for name in names:
        start = text.index(f'[[guests]]\nname = "{name}"')
        ends = [
            i for i in (text.find("[[guests]]\n", start + 1), text.find("\n# ---", start)) if i > 0
        ]
        text = text[:start] + text[min(ends) :]
    path = tmp_path / "nixmox.toml"
    path.write_text(text)
    return path


def scratch_starts(lab: RunningLab) -> int:
    """How often a scratch guest (VMID 9900) was started."""
    return sum(1 for _m, p, st in lab.pve.answers if p.endswith("/9900/status/start") and st == 200)


def test_backup_verify_needs_exactly_what_it_prints(
    lab_token: RunningLab,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    lab = lab_token
    # Archives made by a real backup run (so they carry the guests' NICs and devices).
    backed_up(lab, capsys, EXAMPLE)
    # Without the Windows VM: with a token, its copy is never started, since only
    # root@pam may take its raw hostpci devices away (PVE's rule; test_restore checks it).
    config = without_guests(tmp_path, "win11-gaming")
    acl = printed_grant(lab, capsys, monkeypatch, "backup-verify", config)
    paths = {p for p, _r, _ps in acl}
    # One ACL on the scratch pool, none per scratch VMID; the source guests only VM.Backup.
    assert "/pool/nixmox-verify" in paths and not any(p.startswith("/vms/99") for p in paths)
    assert {ps for p, _r, ps in acl if p == "/vms/100"} == {("VM.Backup",)}
    before = scratch_starts(lab)
    check_job(
        lab,
        capsys,
        acl,
        ["backup", "verify", "--config", str(config)],
        lambda: scratch_starts(lab) >= before + 2,
    )
    assert all(g.vmid < 9900 for g in [*lab.pve.vms, *lab.pve.cts] if not g.template)


def test_backup_verify_of_a_vm_with_a_startup_order_needs_sys_modify_too(
    lab_token: RunningLab,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # The copy loses the VM's startup, and qemu-server wants Sys.Modify on / to take it off.
    lab = lab_token
    lab.pve.guest(101).config["startup"] = "order=2"
    config = without_guests(tmp_path, "nixos-lxc", "win11-gaming")
    text = config.read_text().replace(
        'name = "nixos-vm"\n', 'name = "nixos-vm"\nstartup = { order = 2 }\n'
    )
    config.write_text(text)
    backed_up(lab, capsys, config)
    acl = printed_grant(lab, capsys, monkeypatch, "backup-verify", config)
    assert ("/", "Sys.Modify") in {(p, x) for p, _r, ps in acl for x in ps}
    before = scratch_starts(lab)
    verify = ["backup", "verify", "--config", str(config)]
    check_job(lab, capsys, acl, verify, lambda: scratch_starts(lab) > before)


def test_backup_verify_without_a_pool_grants_each_scratch_vmid(
    lab: RunningLab,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    text = EXAMPLE.read_text().replace('pool = "nixmox-verify"\n', "")
    text = text.replace("vmids = [9900, 9999]", "vmids = [9900, 9903]")
    config = tmp_path / "nixmox.toml"
    config.write_text(text)
    acl = printed_grant(lab, capsys, monkeypatch, "backup-verify", config)
    scratch = sorted(p for p, _r, _ps in acl if p.startswith("/vms/99"))
    assert scratch == [f"/vms/{n}" for n in range(9900, 9904)]
    assert len({r for p, r, _ps in acl if p in scratch}) == 1  # one role for the range


def test_windows_provision_needs_exactly_what_it_prints(
    lab_token: RunningLab,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab = lab_token
    vm = lab.pve.guest(102)
    assert vm is not None
    vm.status = "running"
    guest = WindowsGuest()
    lab.pve.agent_responders.setdefault(102, []).append(guest)
    acl = printed_grant(lab, capsys, monkeypatch, "windows-provision")
    assert {p for p, _r, _ps in acl} == {"/vms/102"}
    argv = ["windows", "provision", "--guest", "win11-gaming", "--config", str(EXAMPLE)]
    check_job(lab, capsys, acl, argv, lambda: bool(guest.executed))


def test_template_upload_needs_exactly_what_it_prints(
    lab_token: RunningLab,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    lab = lab_token
    config = without_guests(tmp_path, "nixos-vm", "win11-gaming")
    acl = printed_grant(lab, capsys, monkeypatch, "template-upload", config)
    assert {(p, x) for p, _r, ps in acl for x in ps} == {
        ("/storage/local", "Datastore.Audit"),
        ("/storage/local", "Datastore.AllocateTemplate"),
    }
    image = tmp_path / "nixos-lxc-test.tar.xz"
    image.write_bytes(os.urandom(64 * 1024))
    volumes = lab.pve.storages["local"]["volumes"]
    check_job(
        lab,
        capsys,
        acl,
        ["template", "upload", str(image), "--config", str(config)],
        lambda: "vztmpl/nixos-lxc-test.tar.xz" in volumes,
    )


def test_the_vm_template_grant_reads_the_dump_directory_from_the_inventory(
    lab: RunningLab, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example declares the backup storage's path: no Datastore.Allocate to read it."""
    acl = printed_grant(lab, capsys, monkeypatch, "template-upload", EXAMPLE)
    held = {(p, x) for p, _r, ps in acl for x in ps}
    assert ("/vms/9000", "VM.Allocate") in held
    assert ("/sdn/zones/localnetwork/vmbr0", "SDN.Use") in held
    assert not any(x == "Datastore.Allocate" for _p, x in held)
