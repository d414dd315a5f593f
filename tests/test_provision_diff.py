"""The diff as pure functions: normalisations and disruption labels."""

from __future__ import annotations

from typing import Any

import pytest

from nixmox.adapters.proxmox import props
from nixmox.inventory.model import Guest
from nixmox.provision.desired import desired_guest
from nixmox.provision.diff import ActualGuest, Change, GuestPlan, Plan, diff_guest, unconfirmed


def vm(**extra: Any) -> Guest:
    return Guest.model_validate({"name": "w", "vmid": 102, "kind": "vm", "node": "pve1", **extra})


def actual(
    config: dict[str, str],
    status: str = "stopped",
    pending: dict[str, str | None] | None = None,
    type_: str = "qemu",
) -> ActualGuest:
    return ActualGuest(
        102, type_, "pve1", status, None, False, {"name": "w", **config}, pending or {}
    )


@pytest.mark.parametrize(
    ("extra", "config"),
    [
        ({"machine": "q35"}, {"machine": "pc-q35-9.2+pve1"}),  # pinned at create
        (
            {"net": [{"bridge": "vmbr1"}]},
            {"net0": "virtio=BC:24:11:9B:15:5F,bridge=vmbr1"},
        ),  # generated MAC
        ({"tags": ["b", "a"]}, {"tags": "a;b"}),
        ({"affinity": "8-15,24-31"}, {"affinity": "24-31,8-9,10-15"}),
        ({"onboot": True}, {"onboot": "1"}),
        ({"agent": True}, {"agent": "enabled=1,fstrim_cloned_disks=1"}),
        ({"memory": 16384}, {"memory": "16384"}),
        ({"description": "gaming"}, {"description": "gaming\n"}),
        (
            {
                "disks": [
                    {
                        "slot": "scsi0",
                        "storage": "vm-disks",
                        "size": "256G",
                        "discard": True,
                        "ssd": True,
                    }
                ]
            },
            {"scsi0": "vm-disks:vm-102-disk-1,ssd=1,size=262144M,discard=on"},
        ),  # units and order
        (
            {"hostpci": [{"device": "0000:01:00", "pcie": True, "x-vga": True}]},
            {"hostpci0": "01:00,x-vga=1,pcie=1"},
        ),
    ],
)
def test_equal_as_proxmox_means_it(extra: dict[str, Any], config: dict[str, str]) -> None:
    plan = diff_guest(desired_guest(vm(**extra)), actual(config))
    assert plan.action == "none", plan.changes


def test_undeclared_keys_are_never_compared() -> None:
    plan = diff_guest(
        desired_guest(vm(cores=2)), actual({"cores": "2", "memory": "999", "vga": "qxl"})
    )
    assert plan.action == "none"


def test_declared_mac_is_compared() -> None:
    guest = vm(net=[{"bridge": "vmbr1", "mac": "bc:24:11:00:00:01"}])
    plan = diff_guest(
        desired_guest(guest), actual({"net0": "virtio=BC:24:11:9B:15:5F,bridge=vmbr1"})
    )
    [change] = plan.changes
    assert change.new == "virtio=BC:24:11:00:00:01,bridge=vmbr1"


@pytest.mark.parametrize(
    ("extra", "config", "label"),
    [
        ({"memory": 8192}, {"memory": "4096"}, "needs-reboot"),
        ({"cores": 4}, {"cores": "2"}, "needs-reboot"),
        ({"description": "x"}, {"description": "y"}, "live"),
        ({"net": [{"bridge": "vmbr2"}]}, {"net0": "virtio=AA:BB:CC:DD:EE:FF,bridge=vmbr1"}, "live"),
        (
            {"disks": [{"slot": "scsi0", "storage": "s", "size": "64G"}]},
            {"scsi0": "s:vm-102-disk-0,size=32G"},
            "live",
        ),
        (
            {"disks": [{"slot": "scsi0", "storage": "t", "size": "32G"}]},
            {"scsi0": "s:vm-102-disk-0,size=32G"},
            "replace",
        ),
    ],
)
def test_running_vm_labels(extra: dict[str, Any], config: dict[str, str], label: str) -> None:
    plan = diff_guest(desired_guest(vm(**extra)), actual(config, status="running"))
    assert [c.label for c in plan.changes] == [label]


def test_stopped_guest_changes_are_live() -> None:
    plan = diff_guest(desired_guest(vm(memory=8192)), actual({"memory": "4096"}))
    assert [c.label for c in plan.changes] == ["live"]


def test_already_pending_change_only_waits_for_a_reboot() -> None:
    plan = diff_guest(
        desired_guest(vm(memory=8192)),
        actual({"memory": "4096"}, status="running", pending={"memory": "8192"}),
    )
    [change] = plan.changes
    assert (change.label, change.via) == ("needs-reboot", "none")


def test_shrink_is_refused() -> None:
    guest = vm(disks=[{"slot": "scsi0", "storage": "s", "size": "16G"}])
    plan = diff_guest(desired_guest(guest), actual({"scsi0": "s:vm-102-disk-0,size=32G"}))
    assert plan.action == "error" and "shrinking a disk is refused" in (plan.error or "")


def test_windows_stages() -> None:
    base = {
        "os": "windows",
        "hostpci": [
            {"device": "0000:01:00", "pcie": True, "x-vga": True},
            {"device": "0000:03:00.0", "pcie": True},
        ],
    }
    running_gaming = {
        "ostype": "win11",
        "vga": "none",
        "hostpci0": "0000:01:00,pcie=1,x-vga=1",
        "hostpci1": "0000:03:00.0,pcie=1",
    }
    install = diff_guest(desired_guest(vm(stage="install", **base)), actual(running_gaming))
    assert {(c.key, c.new) for c in install.changes} == {
        ("vga", "std"),
        ("hostpci0", None),
        ("hostpci1", None),
    }
    gpu = diff_guest(desired_guest(vm(stage="gpu", **base)), actual(running_gaming))
    assert {(c.key, c.new) for c in gpu.changes} == {
        ("vga", "std"),
        ("hostpci0", "0000:01:00,pcie=1"),
    }
    gaming = diff_guest(desired_guest(vm(stage="gaming", **base)), actual(running_gaming))
    assert gaming.action == "none"


def test_wrong_type_or_node_is_an_error_not_a_replacement() -> None:
    lxc = actual({}, type_="lxc")
    assert "nixmox never replaces a guest" in (
        diff_guest(desired_guest(vm(cores=2)), lxc).error or ""
    )
    moved = ActualGuest(102, "qemu", "pve2", "running", None, False, {"name": "w"})
    assert "migrate it or fix the inventory" in (
        diff_guest(desired_guest(vm(cores=2)), moved).error or ""
    )


def test_missing_maintenance_only_guest_cannot_be_created() -> None:
    plan = diff_guest(desired_guest(vm()), None)
    assert plan.action == "error" and "does not say how to create it" in (plan.error or "")


@pytest.mark.parametrize(
    ("key", "value", "parsed"),
    [
        (
            "net0",
            "virtio=AA:BB:CC:DD:EE:FF,bridge=vmbr0,firewall=1",
            {"model": "virtio", "macaddr": "AA:BB:CC:DD:EE:FF", "bridge": "vmbr0", "firewall": "1"},
        ),
        (
            "net0",
            "name=eth0,bridge=vmbr0,hwaddr=AA:BB:CC:DD:EE:FF,ip=dhcp,type=veth",
            {
                "name": "eth0",
                "bridge": "vmbr0",
                "hwaddr": "AA:BB:CC:DD:EE:FF",
                "ip": "dhcp",
                "type": "veth",
            },
        ),
        ("scsi0", "vm-disks:vm-1-disk-0,size=8G", {"file": "vm-disks:vm-1-disk-0", "size": "8G"}),
        ("hostpci0", "0000:01:00,pcie=1", {"host": "0000:01:00", "pcie": "1"}),
        ("agent", "1", {"enabled": "1"}),
        ("features", "nesting=1,keyctl=1", {"nesting": "1", "keyctl": "1"}),
    ],
)
def test_property_strings_round_trip(key: str, value: str, parsed: dict[str, str]) -> None:
    assert props.parse(key, value) == parsed
    assert props.parse(key, props.render(key, parsed)) == parsed


# -- where a guest to create comes from ------------------------------------------------


def _example_guest(name: str) -> Guest:
    from pathlib import Path

    from nixmox.inventory.load import load_inventory

    root = Path(__file__).resolve().parent.parent
    return load_inventory(root / "examples" / "homelab.toml").guest(name)


def test_a_missing_template_file_or_template_vm_is_an_error_at_plan_time() -> None:
    from dataclasses import replace

    from nixmox.adapters.proxmox.cluster import GuestRow
    from nixmox.provision.diff import ActualState, source_problem

    lxc, vm = desired_guest(_example_guest("nixos-lxc")), desired_guest(_example_guest("nixos-vm"))
    tmpl = "local:vztmpl/nixos-lxc-25.05.tar.xz"
    template_vm = GuestRow(9000, "qemu", "pve1", "nixos-template", "stopped", template=True)
    ok = ActualState(
        {}, [template_vm], {}, {}, container_templates={("pve1", "local"): frozenset({tmpl})}
    )
    assert source_problem(lxc, ok) is None and source_problem(vm, ok) is None
    # The storage could not be listed: plan does not guess.
    assert source_problem(lxc, ActualState({}, [], {}, {})) is None
    empty = ActualState(
        {},
        [replace(template_vm, template=False)],
        {},
        {},
        container_templates={("pve1", "local"): frozenset()},
    )
    assert "is not on storage local of pve1" in str(source_problem(lxc, empty))
    assert "clone source 9000 is not a template VM" in str(source_problem(vm, empty))


def _guest_plan(action: str, *changes: tuple[str, str]) -> Plan:
    guest = GuestPlan(
        "nixos-vm",
        101,
        "pve1",
        "qemu",
        action,  # type: ignore[arg-type]
        tuple(Change(k, None, v, "live") for k, v in changes),
    )
    return Plan((guest,), (), (), ())


def test_a_plan_made_again_under_the_lock_may_only_shrink() -> None:
    confirmed = _guest_plan("update", ("memory", "4096"), ("cores", "4"))
    # Another apply made part of it meanwhile: what is left was confirmed.
    assert unconfirmed(_guest_plan("update", ("cores", "4")), confirmed) == []
    assert unconfirmed(_guest_plan("none"), confirmed) == []
    # Someone changed the guest meanwhile: a write the user never saw is named.
    assert unconfirmed(_guest_plan("update", ("memory", "8192")), confirmed) == [
        "guest nixos-vm: memory -> 8192"
    ]
    assert unconfirmed(_guest_plan("create"), confirmed) == ["create guest nixos-vm"]
