"""Host trees for the doctor: a Proxmox host's /proc, /sys and /etc, generated.

``HostSpec()`` is the lab's host made clean for passthrough: a Ryzen 9 5950X
with 128 GiB on an X570 board (the same PCI devices and IOMMU groups the lab's
``/hardware/pci`` reports, from tests.lab.pci), the RTX 3060 at 01:00.0/.1 and
the USB controller at 03:00.0 bound to vfio-pci and claimed at boot, IOMMU and
interrupt remapping on, the boot framebuffer kept off, and VM 102's config
passing them. Each ``VARIANTS`` entry breaks one thing. ``write_host(root, spec)``
lays the tree out the way the kernel does: device directories under
/sys/devices, relative links from /sys/bus/pci/devices, ``driver`` and
``iommu_group``, and /etc/pve/qemu-server as Proxmox's absolute link into
/etc/pve/nodes/NODE. Nothing binary is checked in; ``python -m tests.hosts``
writes a tree for the demo.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.lab.pci import host_devices
from tests.lab.server import CPU_FLAGS

GIB = 1024**3
MIB = 1024**2
KERNEL = "6.14.8-2-pve"
CLEAN_CMDLINE = (
    f"BOOT_IMAGE=/boot/vmlinuz-{KERNEL} root=ZFS=rpool/ROOT/pve-1 boot=zfs quiet "
    "iommu=pt initcall_blacklist=sysfb_init"
)
#: BARs (start, size) of the RTX 3060 as sysfs lists them: BAR0 MMIO, BAR1 the
#: 256 MiB VRAM window (64-bit, so resource line 3 is empty), BAR3, BAR5 I/O.
GPU_BARS = {0: (0xFB000000, 16 * MIB), 1: (0xD0000000, 256 * MIB), 3: (0xE0000000, 32 * MIB)}
REBAR_BAR1 = (0x7C00000000, 12 * GIB)


@dataclass
class Device:
    """One PCI function of the tree."""

    address: str
    vendor: str
    device: str
    class_code: str
    group: int  # -1: in no group
    driver: str | None = None
    boot_vga: bool | None = None  # None: no boot_vga file (not a display device)
    reset_method: str | None = "flr bus"
    bars: dict[int, tuple[int, int]] = field(default_factory=dict)

    @property
    def is_bridge(self) -> bool:
        return self.class_code.startswith("0x0604")


def lab_devices() -> list[Device]:
    """The lab's PCI devices (tests.lab.pci), with drivers of a clean passthrough host."""
    drivers = {
        "0000:01:00.0": "vfio-pci",
        "0000:01:00.1": "vfio-pci",
        "0000:03:00.0": "vfio-pci",
        "0000:02:00.0": "nvme",
        "0000:04:00.0": "nvme",
        "0000:05:00.0": "igc",
        "0000:06:00.0": "igc",
        "0000:07:00.0": "ahci",
        "0000:09:00.3": "xhci_hcd",
        "0000:09:00.4": "snd_hda_intel",
    }
    out = []
    for d in host_devices():
        dev = Device(
            d["id"], d["vendor"], d["device"], d["class"], d["iommugroup"], drivers.get(d["id"])
        )
        if d["class"].startswith("0x0300"):
            dev.boot_vga = True  # the host's only GPU is the one the firmware boots on
            dev.bars = dict(GPU_BARS)
        if d["class"].startswith("0x0604"):
            dev.driver = "pcieport"
        out.append(dev)
    return out


@dataclass
class HostSpec:
    """What the generated host looks like; the defaults are the clean host."""

    hostname: str = "pve1"
    cpu_model: str = "AMD Ryzen 9 5950X 16-Core Processor"
    cpu_vendor: str = "AuthenticAMD"
    cores: int = 16
    threads: int = 32
    flags: str = CPU_FLAGS
    mem_total_kib: int = 131_854_000  # 128 GiB less what the firmware keeps
    mem_available_kib: int = 115_000_000
    kernel: str = KERNEL
    cmdline: str = CLEAN_CMDLINE
    iommu: bool = True
    interrupt_remapping: bool = True
    modules: tuple[str, ...] = ("vfio", "vfio_iommu_type1", "vfio_pci", "kvm", "kvm_amd", "zfs")
    etc_modules: str = "vfio\nvfio_iommu_type1\nvfio_pci\n"
    modprobe: dict[str, str] = field(
        default_factory=lambda: {
            "vfio.conf": "options vfio-pci ids=10de:2504,10de:228e,1912:0015\n"
            "softdep nouveau pre: vfio-pci\n",
            "pve-blacklist.conf": "# nvidiafb is loaded by default\nblacklist nvidiafb\n",
        }
    )
    iomem_extra: list[str] = field(default_factory=list)
    devices: list[Device] = field(default_factory=lab_devices)
    vm_configs: dict[int, str] = field(
        default_factory=lambda: {
            102: "agent: 1\nbios: ovmf\ncores: 8\nhostpci0: 0000:01:00,pcie=1,x-vga=1\n"
            "hostpci1: 0000:03:00.0,pcie=1\nmachine: pc-q35-10.0+pve1\nmemory: 16384\n"
            "vga: none\n\n[install]\nhostpci0: 0000:07:00.0\nmemory: 4096\n",
            101: "agent: 1\ncores: 4\nmemory: 8192\nname: nixos-vm\n",
        }
    )

    def device(self, address: str) -> Device:
        return next(d for d in self.devices if d.address == address)

    def replace(self, **changes: object) -> HostSpec:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _write(root: Path, path: str, text: str) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def _link(root: Path, path: str, target: str) -> None:
    where = root / path.lstrip("/")
    where.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, where)


def _cpuinfo(spec: HostSpec) -> str:
    blocks = []
    for n in range(spec.threads):
        blocks.append(
            f"processor\t: {n}\nvendor_id\t: {spec.cpu_vendor}\ncpu family\t: 25\n"
            f"model name\t: {spec.cpu_model}\nphysical id\t: 0\nsiblings\t: {spec.threads}\n"
            f"core id\t\t: {n % spec.cores}\ncpu cores\t: {spec.cores}\nflags\t\t: {spec.flags}\n"
        )
    return "\n".join(blocks)


def _resource(dev: Device) -> str:
    lines = []
    for index in range(13):
        start, size = dev.bars.get(index, (0, 0))
        end = start + size - 1 if size else 0
        flags = 0x40200 if size else 0
        lines.append(f"0x{start:016x} 0x{end:016x} 0x{flags:016x}")
    return "\n".join(lines) + "\n"


def _iomem(spec: HostSpec) -> str:
    lines = ["00000000-00000fff : Reserved", "00001000-0009ffff : System RAM"]
    for dev in spec.devices:
        for start, size in sorted(dev.bars.values()):
            lines.append(f"  {start:08x}-{start + size - 1:08x} : {dev.address}")
    return "\n".join(lines + spec.iomem_extra) + "\n"


def write_host(root: Path, spec: HostSpec | None = None) -> Path:
    """Write ``spec``'s host under ``root``; returns ``root``."""
    spec = spec or HostSpec()
    root.mkdir(parents=True, exist_ok=True)
    _write(root, "/etc/hostname", spec.hostname + "\n")
    _write(root, "/etc/kernel/cmdline", spec.cmdline.split(" ", 1)[1] + "\n")
    _write(root, "/proc/cpuinfo", _cpuinfo(spec))
    _write(
        root,
        "/proc/meminfo",
        f"MemTotal:       {spec.mem_total_kib} kB\n"
        f"MemFree:        {spec.mem_available_kib // 2} kB\n"
        f"MemAvailable:   {spec.mem_available_kib} kB\n",
    )
    _write(root, "/proc/sys/kernel/osrelease", spec.kernel + "\n")
    _write(root, "/proc/cmdline", spec.cmdline + "\n")
    msi = "IR-PCI-MSI" if spec.interrupt_remapping else "PCI-MSI"
    ioapic = "IR-IO-APIC" if spec.interrupt_remapping else "IO-APIC"
    _write(
        root,
        "/proc/interrupts",
        "           CPU0       CPU1\n"
        f"  0:         44          0   {ioapic}    2-edge      timer\n"
        f" 58:     123456          0  {msi} 1048576-edge      nvme0q0\n",
    )
    _write(root, "/proc/iomem", _iomem(spec))
    for module in spec.modules:
        (root / "sys/module" / module).mkdir(parents=True, exist_ok=True)
    _write(root, "/etc/modules", spec.etc_modules)
    for name, text in spec.modprobe.items():
        _write(root, f"/etc/modprobe.d/{name}", text)
    if spec.iommu:
        (root / "sys/class/iommu/ivhd0").mkdir(parents=True)
    for dev in spec.devices:
        _write_device(root, spec, dev)
    for vmid, text in spec.vm_configs.items():
        _write(root, f"/etc/pve/nodes/{spec.hostname}/qemu-server/{vmid}.conf", text)
    (root / f"etc/pve/nodes/{spec.hostname}/qemu-server").mkdir(parents=True, exist_ok=True)
    # As on Proxmox: an absolute link, which must resolve inside the root, not on this machine.
    _link(root, "/etc/pve/qemu-server", f"/etc/pve/nodes/{spec.hostname}/qemu-server")
    return root


def _write_device(root: Path, spec: HostSpec, dev: Device) -> None:
    home = f"/sys/devices/pci0000:00/{dev.address}"
    _write(root, f"{home}/vendor", dev.vendor + "\n")
    _write(root, f"{home}/device", dev.device + "\n")
    _write(root, f"{home}/class", dev.class_code + "\n")
    _write(root, f"{home}/resource", _resource(dev))
    if dev.reset_method is not None:
        _write(root, f"{home}/reset_method", dev.reset_method + "\n")
    if dev.boot_vga is not None:
        _write(root, f"{home}/boot_vga", "1\n" if dev.boot_vga else "0\n")
    if dev.is_bridge:
        (root / home.lstrip("/") / "pci_bus").mkdir()
    _link(root, f"/sys/bus/pci/devices/{dev.address}", f"../../../devices/pci0000:00/{dev.address}")
    if dev.driver:
        (root / "sys/bus/pci/drivers" / dev.driver).mkdir(parents=True, exist_ok=True)
        _link(root, f"{home}/driver", f"../../../bus/pci/drivers/{dev.driver}")
    if spec.iommu and dev.group >= 0:
        group = f"/sys/kernel/iommu_groups/{dev.group}"
        (root / group.lstrip("/") / "devices").mkdir(parents=True, exist_ok=True)
        _link(root, f"{home}/iommu_group", f"../../../kernel/iommu_groups/{dev.group}")
        _link(
            root, f"{group}/devices/{dev.address}", f"../../../../devices/pci0000:00/{dev.address}"
        )


# -- one variant per failure -------------------------------------------------------


def _iommu_off(spec: HostSpec) -> HostSpec:
    return spec.replace(iommu=False, interrupt_remapping=False)


def _sata_in_gpu_group(spec: HostSpec) -> HostSpec:
    spec.device("0000:07:00.0").group = 11
    return spec


def _nouveau(spec: HostSpec) -> HostSpec:
    spec.device("0000:01:00.0").driver = "nouveau"
    return spec.replace(modprobe={}, modules=(*spec.modules, "nouveau"))


def _boot_framebuffer(spec: HostSpec) -> HostSpec:
    return spec.replace(
        cmdline=spec.cmdline.replace(" initcall_blacklist=sysfb_init", ""),
        iomem_extra=["    d1000000-d12fffff : BOOTFB"],
    )


def _acs_override(spec: HostSpec) -> HostSpec:
    return spec.replace(cmdline=spec.cmdline + " pcie_acs_override=downstream,multifunction")


def _rebar(spec: HostSpec) -> HostSpec:
    spec.device("0000:01:00.0").bars[1] = REBAR_BAR1
    return spec


def _gpu_in_other_vm(spec: HostSpec) -> HostSpec:
    spec.vm_configs[103] = "cores: 4\nhostpci0: 01:00.0,pcie=1\nmemory: 8192\n"
    return spec


def _no_interrupt_remapping(spec: HostSpec) -> HostSpec:
    return spec.replace(interrupt_remapping=False)


def _no_vfio_modules(spec: HostSpec) -> HostSpec:
    return spec.replace(modules=("kvm", "kvm_amd", "zfs"), etc_modules="")


def _ram_short(spec: HostSpec) -> HostSpec:
    return spec.replace(mem_available_kib=12 * 1024 * 1024)


#: name -> (how to break the clean host, the check id that must say so, its status)
VARIANTS: dict[str, tuple[Callable[[HostSpec], HostSpec], str, str]] = {
    "iommu-off": (_iommu_off, "iommu-present", "FAIL"),
    "sata-in-gpu-group": (_sata_in_gpu_group, "iommu-group-clean", "FAIL"),
    "gpu-on-nouveau": (_nouveau, "host-driver", "FAIL"),
    "boot-framebuffer": (_boot_framebuffer, "boot-framebuffer", "FAIL"),
    "acs-override": (_acs_override, "acs-override", "WARN"),
    "resizable-bar": (_rebar, "resizable-bar", "WARN"),
    "gpu-in-other-vm": (_gpu_in_other_vm, "device-exclusive", "WARN"),
    "no-interrupt-remapping": (_no_interrupt_remapping, "interrupt-remapping", "FAIL"),
    "no-vfio-modules": (_no_vfio_modules, "vfio-modules", "FAIL"),
    "ram-short": (_ram_short, "memory-headroom", "FAIL"),
}


def variant(name: str) -> HostSpec:
    """The clean host with one thing broken (a key of ``VARIANTS``)."""
    return VARIANTS[name][0](HostSpec())
