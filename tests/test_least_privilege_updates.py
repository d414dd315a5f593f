"""Least privilege for the update jobs, against the lab with a privilege-separated token.

The three cases of tests/test_least_privilege.py for update nixos, update
windows and update host, each with the fixtures of its own test module: no
privileges (refused before any write, naming them), each privilege of the
printed grant removed alone (stopped at the preflight naming it, zero
writes), exactly the printed grant (the update runs, no 403, every privilege
used but those for a path the run does not take: a rollback, a reboot into a
new kernel).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from nixmox.cli import update_windows as update_windows_command
from nixmox.cli.main import run
from nixmox.core.errors import NixmoxError
from tests.clock import FakeClock
from tests.lab.serving import RunningLab
from tests.lab.windows_agent import update as windows_update
from tests.peers.nixos_host import NixosHost
from tests.test_least_privilege import (
    EXAMPLE,
    TOKEN,
    Acl,
    apply_grant,
    check_job,
    printed_grant,
    refusals,
)
from tests.test_updates_host import (  # noqa: F401  (make_rig is a fixture)
    GUESTS_B,
    NEWER,
    UPGRADES,
    Rig,
    make_rig,
)
from tests.test_updates_nixos import (  # noqa: F401  (guest, flake, healthz are fixtures)
    Flake,
    flake,
    guest,
    healthz,
    ssh_inventory,
)
from tests.test_windows_update import FAST, VMID, windows


def only_guests(config: Path, *names: str) -> Path:
    """``config`` with every ``[[guests]]`` block but ``names`` removed."""
    text = config.read_text()
    blocks = text.split("[[guests]]\n")
    kept = [blocks[0]]
    for block in blocks[1:]:
        name = block.split('name = "', 1)[1].split('"', 1)[0]
        if name in names:
            kept.append(block)
        else:
            # A removed guest's block may run into the next section: keep what follows it.
            tail = block.find("\n# ---")
            if tail >= 0:
                kept[-1] += block[tail:]
    config.write_text("[[guests]]\n".join(kept))
    return config


def nixos_lxc_grant(
    lab: RunningLab,
    guest: NixosHost,  # noqa: F811
    flake: Flake,  # noqa: F811
    healthz: str,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Path, Acl]:
    """The lab's guests, an inventory updating only nixos-lxc over ssh, and the grant
    `nixmox token --job update-nixos` prints for it (nixmox switched to the token)."""
    lab.pve.add_declared_guests()
    config = only_guests(ssh_inventory(tmp_path, guest, flake, healthz), "nixos-lxc")
    return config, printed_grant(lab, capsys, monkeypatch, "update-nixos", config)


def test_update_nixos_needs_exactly_what_it_prints(
    lab_env: RunningLab,
    guest: NixosHost,  # noqa: F811
    flake: Flake,  # noqa: F811
    healthz: str,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab = lab_env
    monkeypatch.setenv("NIXMOX_SSH_CONFIG", str(guest.ssh_config))
    config, acl = nixos_lxc_grant(lab, guest, flake, healthz, tmp_path, capsys, monkeypatch)
    assert {p for p, _r, _ps in acl} == {"/vms/100"}
    flake.upstream_moves()
    check_job(
        lab,
        capsys,
        acl,
        ["update", "nixos", "--config", str(config)],
        lambda: guest.generation() == "system-42-link",
        # Held for a failed update's rollback and a reboot into a new kernel.
        contingent=frozenset({("/vms/100", "VM.PowerMgmt")}),
    )


def test_the_nixos_rollback_path_runs_on_exactly_the_printed_grant(
    lab_env: RunningLab,
    guest: NixosHost,  # noqa: F811
    flake: Flake,  # noqa: F811
    healthz: str,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The privileges held only for a failed update's way back are used when it is taken:
    # the guest is lost after the switch, and its Proxmox snapshot is rolled back.
    lab = lab_env
    config, acl = nixos_lxc_grant(lab, guest, flake, healthz, tmp_path, capsys, monkeypatch)
    apply_grant(lab, acl)
    flake.upstream_moves()
    (guest.script / "kill-sshd.new-system").touch()
    monkeypatch.setenv("NIXMOX_SSH_CONFIG", str(guest.direct_ssh_config))
    since = len(lab.pve.answers)
    lab.pve.used.clear()
    assert run(["--json", "update", "nixos", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert '"rolled-back"' in out, out
    assert refusals(lab, since) == []
    # The grant holds no VM.Snapshot.Rollback (VM.Snapshot lets the rollback through),
    # and the way back used what was held for it alone: starting the guest again.
    assert all("VM.Snapshot.Rollback" not in privs for _p, _r, privs in acl)
    used = {(q, p) for who, q, p in lab.pve.used if who == TOKEN}
    assert ("/vms/100", "VM.PowerMgmt") in used, sorted(used)
    assert any(
        m == "POST" and "/snapshot/" in q and q.endswith("/rollback")
        for m, q, _s in lab.pve.answers[since:]
    )
    assert lab.pve.guest(100).status == "running"


def test_update_windows_needs_exactly_what_it_prints(
    lab_env: RunningLab,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab = lab_env
    lab.pve.add_declared_guests()
    lab.pve.find("pve1", VMID).status = "running"
    config = tmp_path / "nixmox.toml"
    config.write_text(EXAMPLE.read_text())
    config = only_guests(config, "win11-gaming")
    acl = printed_grant(lab, capsys, monkeypatch, "update-windows", config)
    assert {p for p, _r, _ps in acl} == {f"/vms/{VMID}"}
    agent = windows(lab, available=[windows_update("KB890830", reboot=False)])
    agent.reboot_required = False

    def job() -> int:
        # The command with a clock whose waits pass at once; its refusal printed as the
        # CLI's error boundary prints it.
        try:
            return update_windows_command.run(
                config, [], dry_run=False, as_json=False, clock=FakeClock(), timing=FAST
            )
        except NixmoxError as exc:
            print(f"nixmox: {exc}", file=sys.stderr)
            return exc.exit_code

    check_job(
        lab,
        capsys,
        acl,
        job,
        lambda: "update-install" in agent.ran,
    )


#: Two nodes, one guest on each that may move: update host migrates it away and back.
MOVABLE = (
    """
[[guests]]
name = "web"
vmid = 100
kind = "lxc"
node = "pve-a"
onboot = true
rootfs = { storage = "local-zfs", size = "8G" }
[guests.reboot]
policy = "allowed"
"""
    + GUESTS_B
    + """[guests.reboot]
policy = "allowed"
"""
)


def test_update_host_needs_exactly_what_it_prints(
    make_rig: Callable[..., Rig],  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = make_rig(nodes=("pve-a", "pve-b"), guests=MOVABLE)
    acl = printed_grant(rig.lab, capsys, monkeypatch, "update-host", rig.config)
    assert {p for p, _r, _ps in acl} == {"/nodes/pve-a", "/nodes/pve-b", "/vms/100", "/vms/103"}
    rig.pve.set_upgrades(UPGRADES)
    for node in ("pve-a", "pve-b"):
        rig.behave(node, KERNEL=NEWER)

    def rebooted() -> bool:
        return {e for e in rig.pve.host_events if e[0] == "reboot"} == {
            ("reboot", "pve-a"),
            ("reboot", "pve-b"),
        }

    check_job(
        rig.lab,
        capsys,
        acl,
        ["update", "host", "--config", str(rig.config)],
        rebooted,
        # Both guests migrate; stopping and starting is for a guest that cannot.
        contingent=frozenset({("/vms/100", "VM.PowerMgmt"), ("/vms/103", "VM.PowerMgmt")}),
    )
