"""Passthrough readiness on generated host trees (tests.hosts), and against the lab's API."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from nixmox.adapters.hostfacts import HostFacts, PciFacts, read_host
from nixmox.adapters.hostfs import HostFs
from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.settings import connection
from nixmox.core.verdict import Check, Status
from nixmox.inventory.load import load_inventory
from nixmox.inventory.model import Inventory
from nixmox.passthrough.checks import (
    API_CHECK,
    CHECK_IDS,
    PassedDevice,
    PassedGuest,
    check_api_match,
    check_device_exclusive,
    check_interrupt_remapping,
    check_kernel_cmdline,
    check_passthrough,
    check_reset_method,
    check_vfio_early_claim,
    check_vfio_modules,
    resolve_functions,
)
from nixmox.passthrough.mappings import CHECK as MAPPING_CHECK
from tests.hosts import VARIANTS, HostSpec, variant, write_host
from tests.lab.serving import RunningLab

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "homelab.toml"

#: What each variant's fix must say: concrete, not "check your setup".
FIX_SAYS = {
    "iommu-off": "IOMMU / AMD-Vi in the firmware setup",
    "sata-in-gpu-group": "pass 0000:07:00.0 to win11-gaming",
    "gpu-on-nouveau": "echo 'blacklist nouveau' >> /etc/modprobe.d/blacklist-gpu.conf",
    "boot-framebuffer": "add `initcall_blacklist=sysfb_init` in /etc/kernel/cmdline",
    "acs-override": "remove `pcie_acs_override=downstream,multifunction`",
    "resizable-bar": "echo 8 > /sys/bus/pci/devices/0000:01:00.0/resource1_resize",
    "gpu-in-other-vm": "`qm set 103 --delete hostpci0`",
    "no-interrupt-remapping": "options vfio_iommu_type1 allow_unsafe_interrupts=1",
    "no-vfio-modules": "printf '%s\\n' vfio vfio_iommu_type1 vfio_pci >> /etc/modules",
    "ram-short": "`qm set 102 --memory 10240`",
}


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load_inventory(EXAMPLE)


def run_on(
    tmp_path: Path, inv: Inventory, spec: HostSpec, api: Proxmox | None = None
) -> list[Check]:
    return check_passthrough(inv, write_host(tmp_path / "host", spec), api)


def test_clean_host_passes_every_check(tmp_path: Path, inv: Inventory) -> None:
    checks = run_on(tmp_path, inv, HostSpec())
    file_checks = [c for c in checks if c.id not in (API_CHECK, MAPPING_CHECK)]
    assert {c.id for c in file_checks} == set(CHECK_IDS) - {MAPPING_CHECK}
    assert [c for c in file_checks if c.status is not Status.PASS] == []
    # Without the API the cross-check and the two mappings say so, and only they; the
    # file checks judge the devices the inventory says the mappings name.
    assert [c.status for c in checks if c.id == API_CHECK] == [Status.UNKNOWN]
    assert [c.status for c in checks if c.id == MAPPING_CHECK] == [Status.UNKNOWN] * 2


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_each_failure_is_named_with_a_concrete_fix(
    tmp_path: Path, inv: Inventory, name: str
) -> None:
    _, check_id, status = VARIANTS[name]
    checks = run_on(tmp_path, inv, variant(name))
    mine = [c for c in checks if c.id == check_id and c.status.value == status]
    assert mine, [c for c in checks if c.status is not Status.PASS]
    assert FIX_SAYS[name] in mine[0].fix


def test_snapshot_sections_of_vm_configs_are_ignored(tmp_path: Path) -> None:
    # The clean host's 102.conf has [install] with hostpci0: 0000:07:00.0.
    facts = read_host(HostFs(write_host(tmp_path / "h", HostSpec())))
    assert facts.vm_hostpci[102] == {
        "hostpci0": "0000:01:00,pcie=1,x-vga=1",
        "hostpci1": "0000:03:00.0,pcie=1",
    }


def test_host_files_are_read_only_under_the_root(tmp_path: Path) -> None:
    root = write_host(tmp_path / "h", HostSpec())
    # Links that would leave the root: absolute, and .. beyond it.
    os.symlink("/etc/hostname", root / "etc" / "abs-hostname")
    os.symlink("../../../../../../../../etc/hostname", root / "etc" / "up-hostname")
    fs = HostFs(root)
    assert fs.read("/etc/abs-hostname") == "pve1\n"
    assert fs.read("/etc/up-hostname") == "pve1\n"
    assert fs.read("/../../etc/hostname") == "pve1\n"
    assert fs.link_name("/sys/bus/pci/devices/0000:01:00.0/driver") == "vfio-pci"
    assert fs.link_name("/sys/bus/pci/devices/0000:01:00.0/iommu_group") == "11"
    assert fs.link_name("/sys/bus/pci/devices/0000:01:00.0/vendor") is None
    os.symlink("loop-b", root / "loop-a")
    os.symlink("loop-a", root / "loop-b")
    assert fs.read("/loop-a") is None


def test_functions_resolve_from_sysfs() -> None:
    present = ["0000:01:00.0", "0000:01:00.1", "0000:01:000.0", "0000:03:00.0"]
    assert resolve_functions("0000:01:00", present) == ("0000:01:00.0", "0000:01:00.1")
    assert resolve_functions("0000:03:00.0", present) == ("0000:03:00.0",)
    assert resolve_functions("0000:04:00", present) == ()


# -- pure verdicts on hand-built facts ------------------------------------------------

GPU = PciFacts("0000:01:00.0", "0x10de", "0x2503", "0x030000", driver="vfio-pci", iommu_group="1")
AUDIO = PciFacts("0000:01:00.1", "0x10de", "0x228e", "0x040300", iommu_group="1")
GUEST = PassedGuest(
    "win", 102, 16384, False, (PassedDevice(0, "0000:01:00", (GPU.address, AUDIO.address)),)
)


def facts(**changes: object) -> HostFacts:
    base: dict[str, object] = {
        "pci": {GPU.address: GPU, AUDIO.address: AUDIO},
        "iommu_groups": {"1": (GPU.address, AUDIO.address)},
    }
    return HostFacts(**{**base, **changes})  # type: ignore[arg-type]


def test_kernel_cmdline_iommu_off_fails_and_pt_is_advice() -> None:
    off = check_kernel_cmdline(facts(cmdline=("quiet", "amd_iommu=off"), bootloader="grub"))
    assert off.status is Status.FAIL and "remove `amd_iommu=off`" in off.fix
    assert "update-grub" in off.fix
    assert check_kernel_cmdline(facts(cmdline=("quiet",))).status is Status.INFO


def test_unsafe_interrupts_warn_instead_of_fail() -> None:
    unsafe = facts(
        modprobe=(("/etc/modprobe.d/x.conf", "options vfio_iommu_type1 allow_unsafe_interrupts=1"),)
    )
    assert check_interrupt_remapping(unsafe).status is Status.WARN
    logged = facts(kernel_log=("AMD-Vi: Interrupt remapping enabled",))
    assert check_interrupt_remapping(logged).status is Status.PASS


def test_vfio_virqfd_on_new_kernels_warns_and_listed_modules_only_need_loading() -> None:
    loaded = frozenset({"vfio", "vfio_iommu_type1", "vfio_pci"})
    virqfd = facts(
        modules=loaded, modules_load=frozenset({"vfio_virqfd"}), kernel_release="6.8.12-4-pve"
    )
    assert check_vfio_modules(virqfd).status is Status.WARN
    old = facts(
        modules=loaded, modules_load=frozenset({"vfio_virqfd"}), kernel_release="5.15.1-pve"
    )
    assert check_vfio_modules(old).status is Status.PASS
    pending = facts(modules=frozenset(), modules_load=loaded)
    assert check_vfio_modules(pending).status is Status.WARN


def test_early_claim_line_uses_sysfs_ids_and_keeps_existing_ones() -> None:
    usb = (("/etc/modprobe.d/vfio.conf", "options vfio_pci ids=1912:0015"),)
    [check] = check_vfio_early_claim(facts(modprobe=usb), GUEST)
    assert check.status is Status.WARN
    assert "`options vfio-pci ids=1912:0015,10de:2503,10de:228e`" in check.fix
    soft = (("/etc/modprobe.d/vfio.conf", "softdep nouveau pre: vfio-pci"),)
    assert check_vfio_early_claim(facts(modprobe=soft), GUEST)[0].status is Status.PASS


def test_amd_reset_bug_needs_vendor_reset() -> None:
    navi = PciFacts("0000:01:00.0", "0x1002", "0x731f", "0x030000", reset_method="bus")
    guest = PassedGuest(
        "win", 102, 8192, False, (PassedDevice(0, "0000:01:00.0", (navi.address,)),)
    )
    [check] = check_reset_method(facts(pci={navi.address: navi}), guest)
    assert check.status is Status.WARN and "device_specific" in check.fix
    loaded = facts(pci={navi.address: navi}, modules=frozenset({"vendor_reset"}))
    assert check_reset_method(loaded, guest)[0].status is Status.PASS


def test_device_used_by_a_running_vm_fails() -> None:
    shared = facts(vm_hostpci={103: {"hostpci0": "host=01:00.0;02:00.0,pcie=1"}})
    statuses = [c.status for c in check_device_exclusive(shared, GUEST, frozenset({103}))]
    assert statuses == [Status.FAIL, Status.PASS]


def test_api_mismatch_names_each_difference() -> None:
    listing = [
        {
            "id": GPU.address,
            "vendor": "0x10de",
            "device": "0x2504",
            "class": "0x030000",
            "iommugroup": 7,
        },
        {
            "id": AUDIO.address,
            "vendor": "0x10de",
            "device": "0x228e",
            "class": "0x040300",
            "iommugroup": 1,
        },
    ]
    gpu, audio = check_api_match(facts(), GUEST, listing, "")
    assert gpu.status is Status.FAIL
    assert "device 0x2504 vs 0x2503" in gpu.message and "IOMMU group 7 vs 1" in gpu.message
    assert audio.status is Status.PASS


# -- against the lab's API ---------------------------------------------------------


@pytest.fixture
def api(lab_env: RunningLab) -> Proxmox:
    return Proxmox(connection(load_inventory(EXAMPLE).proxmox))


def test_api_cross_check_agrees_with_the_tree(tmp_path: Path, inv: Inventory, api: Proxmox) -> None:
    checks = run_on(tmp_path, inv, HostSpec(), api)
    cross = [c for c in checks if c.id == API_CHECK]
    assert [c.status for c in cross] == [Status.PASS] * 3
    assert all(c.status is Status.PASS for c in checks)


def test_api_cross_check_catches_a_mismatch(
    tmp_path: Path, inv: Inventory, api: Proxmox, lab: RunningLab
) -> None:
    for dev in lab.pve.pci_devices:
        if dev["id"] == "0000:01:00.1":
            dev["iommugroup"] = 12
        if dev["id"] == "0000:03:00.0":
            dev["id"] = "0000:04:00.7"
    cross = {c.subject: c for c in run_on(tmp_path, inv, HostSpec(), api) if c.id == API_CHECK}
    audio = cross["win11-gaming (102) hostpci0 0000:01:00.1"]
    assert audio.status is Status.FAIL and "IOMMU group 12 vs 11" in audio.message
    usb = cross["win11-gaming (102) hostpci1 0000:03:00.0"]
    assert usb.status is Status.FAIL and "/hardware/pci does not" in usb.message


def test_running_vm_needs_no_headroom(
    tmp_path: Path, inv: Inventory, api: Proxmox, lab: RunningLab
) -> None:
    lab.pve.add_declared_guests()
    vm = lab.pve.guest(102)
    assert vm is not None
    vm.status = "running"
    checks = run_on(tmp_path, inv, variant("ram-short"), api)
    [memory] = [c for c in checks if c.id == "memory-headroom"]
    assert memory.status is Status.PASS and "running" in memory.message


def host_root(tmp_path: Path) -> Path:
    """A clean host's files, written once per test."""
    root = tmp_path / "host"
    return root if root.exists() else write_host(root, HostSpec())


def test_a_mapping_resolves_to_its_devices_through_the_api(
    tmp_path: Path, inv: Inventory, api: Proxmox, lab: RunningLab
) -> None:
    checks = check_passthrough(inv, host_root(tmp_path), api)
    mapped = {c.subject: c for c in checks if c.id == MAPPING_CHECK}
    gpu = mapped["win11-gaming (102) hostpci0"]
    assert gpu.status is Status.PASS and gpu.message == "mapping 'rtx3060' -> 0000:01:00 on pve1"
    # The per-device checks judge what the mapping names: both functions of the GPU.
    present = {c.subject for c in checks if c.id == "device-present"}
    assert "win11-gaming (102) hostpci0 0000:01:00.1" in present
    # Pointing elsewhere than the inventory says is a FAIL, and the checks follow the mapping.
    lab.pve.mappings["pci"]["usb-card"]["map"] = ["node=pve1,path=0000:02:00.0,id=144d:a80a"]
    checks = check_passthrough(inv, host_root(tmp_path), api)
    usb = {c.subject: c for c in checks if c.id == MAPPING_CHECK}["win11-gaming (102) hostpci1"]
    assert usb.status is Status.FAIL
    assert "names 0000:02:00.0 on pve1, the inventory says 0000:03:00.0" in usb.message


def test_a_missing_mapping_gets_the_command_that_creates_it(
    tmp_path: Path, inv: Inventory, api: Proxmox, lab: RunningLab
) -> None:
    del lab.pve.mappings["pci"]["rtx3060"]
    lab.pve.mappings["pci"]["usb-card"]["map"] = ["node=pve2,path=0000:03:00.0,id=1912:0014"]
    checks = {
        c.subject: c
        for c in check_passthrough(inv, host_root(tmp_path), api)
        if c.id == MAPPING_CHECK
    }
    gpu, usb = checks["win11-gaming (102) hostpci0"], checks["win11-gaming (102) hostpci1"]
    assert gpu.status is Status.FAIL and "'rtx3060' does not exist" in gpu.message
    # Vendor, device and IOMMU group as /nodes/pve1/hardware/pci lists the GPU.
    command = (
        "pvesh create /cluster/mapping/pci --id rtx3060 "
        "--map node=pve1,path=0000:01:00,id=10de:2504,iommugroup=11"
    )
    assert f"`{command}`" in gpu.fix
    assert "root@pam or Mapping.Modify" in gpu.fix and "never asks for" in gpu.fix
    assert usb.status is Status.FAIL and "no entry for node pve1" in usb.message
    assert "pvesh set /cluster/mapping/pci/usb-card --map node=pve2," in usb.fix
    # The printed command, run as root, makes the check pass.
    argv = shlex.split(command)
    lab.pve.mappings["pci"][argv[4]] = {"map": [argv[6]]}
    checks = {
        c.subject: c
        for c in check_passthrough(inv, host_root(tmp_path), api)
        if c.id == MAPPING_CHECK
    }
    assert checks["win11-gaming (102) hostpci0"].status is Status.PASS


def test_a_token_that_cannot_see_the_mapping_is_told_so(
    tmp_path: Path, inv: Inventory, lab: RunningLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "nixmox@pve!doctor"
    lab.pve.apitokens[token] = "doctor-secret-1234"
    lab.pve.acl = {}
    for who in (token.split("!")[0], token):
        lab.pve.grant(who, "/", "VM.Audit", "Sys.Audit")
        lab.pve.grant(who, "/mapping/pci/usb-card", "Mapping.Use")
    for key, value in lab.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("NIXMOX_PVE_TOKEN_ID", token)
    monkeypatch.setenv("NIXMOX_PVE_TOKEN", "doctor-secret-1234")
    monkeypatch.delenv("NIXMOX_PVE_USER", raising=False)
    limited = Proxmox(connection(load_inventory(EXAMPLE).proxmox))
    checks = {
        c.subject: c
        for c in check_passthrough(inv, host_root(tmp_path), limited)
        if c.id == MAPPING_CHECK
    }
    gpu = checks["win11-gaming (102) hostpci0"]
    assert gpu.message == "this token cannot see resource mapping 'rtx3060'"
    assert "Mapping.Use on /mapping/pci/rtx3060" in gpu.fix
    assert checks["win11-gaming (102) hostpci1"].status is Status.PASS
