"""`update host`'s pure decisions: kernel order and reboot-needed detection on captured
files, reboot windows and policies, which guests leave a node and how, preflight."""

from __future__ import annotations

import functools
import itertools
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nixmox.adapters.proxmox.cluster import GuestRow
from nixmox.inventory.model import Guest, Node, RebootPolicy
from nixmox.rules.window import window_open as inside_window
from nixmox.updates.host.preflight import problems
from nixmox.updates.host.reboot_needed import (
    PROBE,
    BootFacts,
    compare_versions,
    is_kernel_package,
    newest,
    parse_facts,
    reboot_needed,
)
from nixmox.updates.host.rollout import Move, RunningGuest, Stop, plan_evacuation, rollout_order
from nixmox.updates.reboot_policy import guest_stop, node_reboot

VIENNA = ZoneInfo("Europe/Vienna")


def at(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=VIENNA)  # type: ignore[misc]


# -- kernel versions ------------------------------------------------------------


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("6.8.12-4-pve", "6.8.12-10-pve"),  # the ABI number counts as a number
        ("6.8.12-10-pve", "6.14.8-2-pve"),  # so does the minor version
        ("6.14.8-2-pve", "6.14.11-1-pve"),
        ("5.15.158-2-pve", "6.2.16-3-pve"),
        ("6.1.0-18-amd64", "6.1.0-25-amd64"),
        ("6.5.0~rc1", "6.5.0"),  # dpkg's tilde sorts before the release
        ("6.8.12", "6.8.12-1"),
        ("6.8.12-1-pve", "6.8.12-1-pve-signed"),
    ],
)
def test_kernel_releases_order_like_dpkg(older: str, newer: str) -> None:
    assert compare_versions(older, newer) < 0
    assert compare_versions(newer, older) > 0
    assert newest([newer, older]) == newer == newest([older, newer])


releases = st.tuples(
    st.integers(0, 30), st.integers(0, 30), st.integers(0, 300), st.integers(0, 40)
).map(lambda t: (t, f"{t[0]}.{t[1]}.{t[2]}-{t[3]}-pve"))


@given(releases, releases)
def test_order_of_pve_releases_is_the_order_of_their_numbers(
    a: tuple[tuple[int, ...], str], b: tuple[tuple[int, ...], str]
) -> None:
    (ta, ra), (tb, rb) = a, b
    sign = (ta > tb) - (ta < tb)
    got = compare_versions(ra, rb)
    assert (got > 0) - (got < 0) == sign


version_text = st.text(alphabet="0123456789.-~+abcpve", max_size=12)


@given(version_text, version_text)
def test_comparison_is_antisymmetric(a: str, b: str) -> None:
    x, y = compare_versions(a, b), compare_versions(b, a)
    assert (x > 0) - (x < 0) == -((y > 0) - (y < 0))


@given(st.lists(version_text, min_size=1, max_size=8))
def test_sorting_is_consistent_and_newest_is_maximal(versions: list[str]) -> None:
    ordered = sorted(versions, key=functools.cmp_to_key(compare_versions))
    for lo, hi in itertools.pairwise(ordered):
        assert compare_versions(lo, hi) <= 0
    top = newest(versions)
    assert top is not None and all(compare_versions(top, v) >= 0 for v in versions)


def test_kernel_packages() -> None:
    for name in (
        "proxmox-kernel-6.14",
        "proxmox-kernel-6.14.11-1-pve-signed",
        "proxmox-default-kernel",
        "pve-kernel-5.15",
    ):
        assert is_kernel_package(name), name
    for name in ("proxmox-kernel-helper", "pve-manager", "linux-libc-dev", "proxmox-ve"):
        assert not is_kernel_package(name), name


# -- reboot needed, from captured files ------------------------------------------


def host_tree(
    root: Path,
    running: str,
    boot: list[str] = (),  # type: ignore[assignment]
    modules: list[str] = (),  # type: ignore[assignment]
    files: dict[str, str] | None = None,
) -> Path:
    """A host's files as PROBE reads them, under ``root``."""
    (root / "proc/sys/kernel").mkdir(parents=True)
    (root / "proc/sys/kernel/osrelease").write_text(running + "\n")
    (root / "boot").mkdir()
    for release in boot:
        (root / "boot" / f"vmlinuz-{release}").write_text("")
        (root / "boot" / f"initrd.img-{release}").write_text("")
        (root / "boot" / f"config-{release}").write_text("")
    (root / "boot/pve").mkdir()  # proxmox-boot-tool's own copies: not a kernel
    for release in modules:
        (root / "lib/modules" / release).mkdir(parents=True)
    for name, text in (files or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def probe(root: Path) -> BootFacts:
    """Run the real PROBE script with /bin/sh over ``root``, as nixmox does on a node."""
    out = subprocess.run(
        ["sh", "-c", PROBE, "sh", str(root)], capture_output=True, text=True, check=True
    )
    return parse_facts(out.stdout)


def test_captured_files_of_a_host_running_its_newest_kernel(tmp_path: Path) -> None:
    root = host_tree(tmp_path, "6.8.12-10-pve", boot=["6.8.12-4-pve", "6.8.12-10-pve"])
    facts = probe(root)
    assert facts.running == "6.8.12-10-pve"
    assert sorted(facts.boot_kernels) == ["6.8.12-10-pve", "6.8.12-4-pve"]
    assert not facts.reboot_required
    assert reboot_needed(facts) is None


def test_a_newer_installed_kernel_needs_a_reboot(tmp_path: Path) -> None:
    # Sorted as text, 6.8.12-4 would look newer than 6.8.12-10: it is not.
    root = host_tree(tmp_path, "6.8.12-4-pve", boot=["6.8.12-10-pve", "6.8.12-4-pve"])
    need = reboot_needed(probe(root))
    assert need is not None and need.kernel == "6.8.12-10-pve"
    assert str(need) == "running kernel 6.8.12-4-pve, newest installed 6.8.12-10-pve"


def test_reboot_required_flag_and_its_packages(tmp_path: Path) -> None:
    root = host_tree(
        tmp_path,
        "6.14.8-2-pve",
        boot=["6.14.8-2-pve"],
        files={"run/reboot-required": "", "run/reboot-required.pkgs": "libc6\ndbus\n"},
    )
    need = reboot_needed(probe(root))
    assert need is not None and need.kernel is None
    assert str(need) == "/run/reboot-required exists (by libc6, dbus)"


def test_modules_count_only_without_kernels_in_boot(tmp_path: Path) -> None:
    # Old module directories linger after a kernel's removal: /boot decides when it can.
    root = host_tree(
        tmp_path / "a", "6.8.12-4-pve", boot=["6.8.12-4-pve"], modules=["6.14.8-2-pve"]
    )
    assert reboot_needed(probe(root)) is None
    root = host_tree(tmp_path / "b", "6.8.12-4-pve", modules=["6.8.12-4-pve", "6.14.8-2-pve"])
    need = reboot_needed(probe(root))
    assert need is not None and need.kernel == "6.14.8-2-pve"


def test_a_pinned_kernel_is_the_one_that_boots(tmp_path: Path) -> None:
    kernels = ["6.8.12-4-pve", "6.14.8-2-pve"]
    pinned = {"etc/kernel/proxmox-boot-pin": "6.8.12-4-pve\n"}
    root = host_tree(tmp_path / "a", "6.8.12-4-pve", boot=kernels, files=pinned)
    assert reboot_needed(probe(root)) is None  # the newer kernel is not what would boot
    root = host_tree(tmp_path / "b", "6.14.8-2-pve", boot=kernels, files=pinned)
    need = reboot_needed(probe(root))
    assert need is not None and need.kernel == "6.8.12-4-pve"
    assert "pinned" in str(need)


def test_a_running_kernel_newer_than_any_installed_is_no_reason(tmp_path: Path) -> None:
    root = host_tree(tmp_path, "6.17.1-1-pve", boot=["6.14.8-2-pve"])
    assert reboot_needed(probe(root)) is None


def test_probe_of_an_empty_root_reads_nothing_and_fails_nothing(tmp_path: Path) -> None:
    facts = probe(tmp_path)
    assert facts == BootFacts(running="")
    assert reboot_needed(facts) is None


# -- reboot windows and policies -------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "when", "inside"),
    [
        # Trailing zero time fields count as "*": Sunday 04:00-04:59.
        ("Sun *-*-* 04:00:00", at(2026, 11, 29, 4, 0), True),
        ("Sun *-*-* 04:00:00", at(2026, 11, 29, 4, 59, 59), True),
        ("Sun *-*-* 04:00:00", at(2026, 11, 29, 5, 0), False),
        ("Sun *-*-* 04:00:00", at(2026, 11, 28, 4, 30), False),  # a Saturday
        ("Sat 03..05:00", at(2026, 11, 28, 5, 59), True),
        ("Sat 03..05:00", at(2026, 11, 28, 6, 0), False),
        ("Sat 04:30", at(2026, 11, 28, 4, 30, 59), True),  # one minute
        ("Sat 04:30", at(2026, 11, 28, 4, 31), False),
        ("Sun", at(2026, 11, 29, 23, 59), True),
        ("Mon..Fri *-*-* 22..23:*:*", at(2026, 11, 27, 22, 15), True),
        ("*-*-* *:*:*", at(2026, 11, 25, 12, 34, 56), True),
        ("2001-01-01", at(2026, 11, 25, 0, 0), False),
        ("*-02~03", at(2026, 2, 26, 10, 0), True),  # the third last day of February
        ("Mon *-05~07/1", at(2026, 5, 25, 1, 0), True),  # the last Monday of May
        ("Mon *-05~07/1", at(2026, 5, 18, 1, 0), False),
        # The spec's own zone wins over the inventory's: 03:30 UTC is 04:30 in Vienna.
        ("Sun 03:00 UTC", at(2026, 11, 29, 4, 30), True),
    ],
)
def test_inside_window(spec: str, when: datetime, inside: bool) -> None:
    assert inside_window(spec, when, VIENNA) is inside


def node(**fields: Any) -> Node:
    return Node.model_validate({"name": "pve1", **fields})


def test_node_policies() -> None:
    sunday = at(2026, 11, 29, 4, 20)
    assert not node_reboot(node(), sunday, VIENNA).allowed  # default: never
    assert node_reboot(node(reboot="allowed"), sunday, VIENNA).allowed
    windowed = node(reboot="window", reboot_window="Sun 04:00")
    assert node_reboot(windowed, sunday, VIENNA).allowed
    verdict = node_reboot(windowed, at(2026, 11, 28, 4, 20), VIENNA)
    assert not verdict.allowed and verdict.reason == "outside the reboot window Sun 04:00"


def guest(vmid: int, kind: str = "vm", policy: str = "never", **fields: Any) -> Guest:
    reboot = RebootPolicy.model_validate({"policy": policy, **fields})
    return Guest.model_validate(
        {"name": f"g{vmid}", "vmid": vmid, "kind": kind, "node": "pve1", "reboot": reboot}
    )


def test_guest_policies_for_a_host_reboot() -> None:
    now = at(2026, 11, 29, 4, 20)
    assert guest_stop(guest(100, policy="allowed"), now, VIENNA).allowed
    assert guest_stop(guest(100, policy="window", window="Sun 04:00"), now, VIENNA).allowed
    assert not guest_stop(guest(100, policy="window", window="Sat 04:00"), now, VIENNA).allowed
    assert not guest_stop(guest(100), now, VIENNA).allowed
    idle = guest_stop(guest(100, policy="when-idle"), now, VIENNA)
    assert not idle.allowed and "when-idle" in idle.reason


# -- which guests leave, and how ---------------------------------------------------

NOW = at(2026, 11, 29, 4, 20)


def test_vms_migrate_online_whatever_their_policy() -> None:
    running = [RunningGuest(101, "qemu", "db", local_disks=True), RunningGuest(103, "qemu", "x")]
    plan = plan_evacuation(
        running, ["pve2", "pve3"], {101: guest(101), 103: guest(103)}, NOW, VIENNA
    )
    assert plan.moves == (Move(101, "qemu", "db", "pve2", True), Move(103, "qemu", "x", "pve2"))
    assert plan.stops == () and plan.holds == ()


def test_passthrough_vm_is_shut_down_when_its_policy_allows() -> None:
    running = [RunningGuest(102, "qemu", "gaming", ("hostpci0", "hostpci1"))]
    allowed = plan_evacuation(running, ["pve2"], {102: guest(102, policy="allowed")}, NOW, VIENNA)
    assert allowed.moves == ()
    assert allowed.stops == (
        Stop(102, "qemu", "gaming", "cannot migrate: local devices hostpci0, hostpci1"),
    )
    held = plan_evacuation(running, ["pve2"], {102: guest(102, policy="when-idle")}, NOW, VIENNA)
    assert held.moves == held.stops == ()
    assert held.holds == (
        "VM 102 (gaming) cannot migrate: local devices hostpci0, hostpci1, and its reboot "
        "policy when-idle (not judged for a host reboot) forbids stopping it",
    )


def test_containers_restart_to_migrate_so_they_need_permission() -> None:
    running = [RunningGuest(100, "lxc", "web")]
    ok = plan_evacuation(running, ["pve2"], {100: guest(100, "lxc", "allowed")}, NOW, VIENNA)
    assert ok.moves == (Move(100, "lxc", "web", "pve2"),)
    held = plan_evacuation(running, ["pve2"], {100: guest(100, "lxc")}, NOW, VIENNA)
    assert held.holds and "restarts it" in held.holds[0]


def test_single_node_stops_everything_allowed_and_holds_on_the_rest() -> None:
    running = [RunningGuest(100, "lxc", "web"), RunningGuest(101, "qemu", "db")]
    declared = {100: guest(100, "lxc", "allowed"), 101: guest(101, policy="allowed")}
    plan = plan_evacuation(running, [], declared, NOW, VIENNA)
    assert [s.vmid for s in plan.stops] == [100, 101] and plan.moves == ()
    declared[101] = guest(101)
    held = plan_evacuation(running, [], declared, NOW, VIENNA)
    assert held.stops == () and held.moves == ()
    assert held.holds == (
        "VM 101 (db) no other node to move it to, and its reboot policy never forbids stopping it",
    )


def test_unmanaged_guests_hold_the_reboot_and_one_hold_moves_nothing() -> None:
    running = [RunningGuest(101, "qemu", "db"), RunningGuest(555, "qemu", "theirs")]
    plan = plan_evacuation(running, ["pve2"], {101: guest(101)}, NOW, VIENNA)
    assert plan.moves == () and plan.stops == ()
    assert plan.holds == (
        "VM 555 (theirs) is not in the inventory: nixmox neither moves nor stops it",
    )


def test_migration_check_limits_targets() -> None:
    running = [RunningGuest(101, "qemu", "db", allowed_nodes=("pve3",))]
    plan = plan_evacuation(running, ["pve2", "pve3"], {101: guest(101)}, NOW, VIENNA)
    assert plan.moves == (Move(101, "qemu", "db", "pve3"),)


def test_vm_with_local_disks_and_snapshots_is_stopped_not_live_migrated() -> None:
    # Issue 24 item 14: PVE refuses an online storage migration while snapshots exist.
    running = [RunningGuest(101, "qemu", "db", local_disks=True, has_snapshots=True)]
    plan = plan_evacuation(running, ["pve2"], {101: guest(101, policy="allowed")}, NOW, VIENNA)
    assert plan.moves == ()
    assert plan.stops == (
        Stop(101, "qemu", "db", "cannot migrate online: local disks and Proxmox snapshots"),
    )
    held = plan_evacuation(running, ["pve2"], {101: guest(101)}, NOW, VIENNA)
    assert held.holds == (
        "VM 101 (db) cannot migrate online: local disks and Proxmox snapshots, and its reboot "
        "policy never forbids stopping it",
    )
    # Snapshots on shared storage do not pin it.
    shared = [RunningGuest(101, "qemu", "db", has_snapshots=True)]
    assert plan_evacuation(shared, ["pve2"], {101: guest(101)}, NOW, VIENNA).moves


def test_self_reboot_holds_for_a_running_guest_without_onboot() -> None:
    # Issue 24 item 11: the node's own boot starts only the onboot guests.
    running = [RunningGuest(100, "lxc", "web"), RunningGuest(102, "qemu", "game", onboot=False)]
    declared = {100: guest(100, "lxc", "allowed"), 102: guest(102, policy="allowed")}
    held = plan_evacuation(running, [], declared, NOW, VIENNA, self_reboot=True)
    assert held.holds == (
        "VM 102 (game) runs without onboot: the node's own boot would not start it again "
        "(stop it, or set onboot, first)",
    )
    # Rebooted from elsewhere, nixmox stops and starts it itself.
    plan = plan_evacuation(running, [], declared, NOW, VIENNA)
    assert [s.vmid for s in plan.stops] == [100, 102] and plan.holds == ()


def test_rollout_order_puts_the_local_node_last() -> None:
    nodes = [node(name=n) for n in ("pve1", "pve2", "pve3")]
    assert [n.name for n in rollout_order(nodes, "pve1")] == ["pve2", "pve3", "pve1"]
    assert [n.name for n in rollout_order(nodes, None)] == ["pve1", "pve2", "pve3"]


# -- preflight ------------------------------------------------------------------

STATUS = [
    {"type": "cluster", "name": "lab", "nodes": 2, "quorate": 1},
    {"type": "node", "name": "pve1", "online": 1},
    {"type": "node", "name": "pve2", "online": 1},
]


def test_preflight_passes_on_a_quiet_cluster() -> None:
    finished = {"type": "vzdump", "node": "pve1", "endtime": 5, "status": "OK", "upid": "U1"}
    assert problems("pve1", STATUS, [finished], [GuestRow(100, "qemu", "pve1")]) == []


def test_preflight_problems() -> None:
    status = [
        {"type": "cluster", "name": "lab", "nodes": 2, "quorate": 0},
        {"type": "node", "name": "pve1", "online": 1},
        {"type": "node", "name": "pve2", "online": 0},
    ]
    tasks = [
        {"type": "vzdump", "node": "pve1", "upid": "UPID:pve1:1", "id": ""},
        {"type": "vzdump", "node": "pve2", "upid": "UPID:pve2:2", "id": ""},  # not this node
        {"type": "qmigrate", "node": "pve2", "id": "103", "upid": "UPID:pve2:3"},
    ]
    resources = [GuestRow(100, "qemu", "pve1", lock="backup")]
    assert problems("pve1", status, tasks, resources) == [
        "the cluster has no quorum (1 of 2 nodes online)",
        "a backup (vzdump) is running on pve1: UPID:pve1:1",
        "a migration is running on pve2: qmigrate of 103",
        "guest 100 on pve1 is locked (backup)",
    ]
    assert problems("pve2", status, [], []) == [
        "node pve2 is offline",
        "the cluster has no quorum (1 of 2 nodes online)",
    ]
    assert problems("pve9", STATUS, [], []) == [
        "the API does not know node pve9 (its nodes: pve1, pve2)"
    ]


def test_a_node_outside_any_cluster_has_quorum() -> None:
    assert problems("pve1", [{"type": "node", "name": "pve1", "online": 1}], [], []) == []
