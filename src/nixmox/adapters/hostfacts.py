"""Facts about a host, read from its files (``/proc``, ``/sys``, ``/etc``).

This is the only doctor module that reads host files; it turns them into
plain frozen data and decides nothing. The verdicts over these facts
(:mod:`nixmox.passthrough.checks`, :mod:`nixmox.doctor.host_area`) are pure
functions, tested on hand-built facts and on captured or generated trees.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from nixmox.adapters.hostfs import HostFs

#: Kernel log lines that say interrupt remapping is on (AMD-Vi, Intel VT-d).
IR_LOG_PHRASES = ("Interrupt remapping enabled", "Enabled IRQ remapping")
_KERNEL_LOGS = ("/var/log/kern.log", "/var/log/dmesg", "/var/log/boot.log")
_HOSTPCI = re.compile(r"^(hostpci\d+):\s*(.*)$")


@dataclass(frozen=True)
class PciFacts:
    """One PCI function as sysfs shows it (``/sys/bus/pci/devices/ADDR``)."""

    address: str
    vendor: str  # "0x10de", as sysfs writes it
    device: str  # "0x2504"
    class_code: str  # "0x030000"
    driver: str | None = None
    iommu_group: str | None = None
    boot_vga: bool = False
    reset_method: str | None = None  # None: no reset_method file (kernel < 5.15)
    #: (start, end) of each BAR in ``resource`` order; (0, 0) for an unused one.
    bars: tuple[tuple[int, int], ...] = ()
    is_bridge: bool = False  # has a pci_bus directory: Proxmox never rebinds it

    @property
    def ids(self) -> str:
        """``vendor:device`` without ``0x``, as ``vfio-pci ids=`` and ``lspci -nn`` write it."""
        return f"{_hex(self.vendor)}:{_hex(self.device)}"

    def bar_size(self, index: int) -> int:
        """Size in bytes of BAR ``index`` (0 when unused or unknown)."""
        if index >= len(self.bars):
            return 0
        start, end = self.bars[index]
        return 0 if start == end == 0 else end - start + 1


@dataclass(frozen=True)
class IomemRange:
    """One line of ``/proc/iomem``: who owns ``start``..``end``."""

    start: int
    end: int
    name: str


@dataclass(frozen=True)
class HostFacts:
    """Everything the doctor reads from a host's files, as plain data."""

    hostname: str | None = None
    cpu_model: str | None = None
    cpu_vendor: str | None = None
    cpu_flags: frozenset[str] = frozenset()
    threads: int = 0
    cores: int | None = None
    mem_total_kib: int | None = None
    mem_available_kib: int | None = None
    kernel_release: str | None = None
    cmdline: tuple[str, ...] = ()
    bootloader: str = "unknown"  # "systemd-boot" (/etc/kernel/cmdline), "grub", "unknown"
    interrupt_remapping: bool = False  # IR- entries in /proc/interrupts
    kernel_log: tuple[str, ...] = ()  # lines mentioning interrupt remapping
    iommu_units: tuple[str, ...] = ()
    iommu_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    modules: frozenset[str] = frozenset()  # /sys/module
    #: (file, line) of /etc/modprobe.d/*.conf, comments dropped, continuation joined.
    modprobe: tuple[tuple[str, str], ...] = ()
    #: module names listed for loading at boot (/etc/modules, /etc/modules-load.d).
    modules_load: frozenset[str] = frozenset()
    iomem: tuple[IomemRange, ...] = ()
    pci: Mapping[str, PciFacts] = field(default_factory=dict)
    #: VMID -> {hostpciN: value} of /etc/pve/qemu-server/VMID.conf (current config only).
    vm_hostpci: Mapping[int, Mapping[str, str]] = field(default_factory=dict)


def _hex(value: str) -> str:
    value = value.strip().lower()
    return value[2:] if value.startswith("0x") else value


def read_host(fs: HostFs) -> HostFacts:
    """Read every fact the doctor uses from the host seen through ``fs``."""
    cpu = _cpuinfo(fs.read("/proc/cpuinfo") or "")
    mem = _meminfo(fs.read("/proc/meminfo") or "")
    interrupts = fs.read("/proc/interrupts") or ""
    return HostFacts(
        hostname=(fs.read("/etc/hostname") or "").strip().split(".")[0] or None,
        cpu_model=cpu.model,
        cpu_vendor=cpu.vendor,
        cpu_flags=cpu.flags,
        threads=cpu.threads,
        cores=cpu.cores,
        mem_total_kib=mem.get("MemTotal"),
        mem_available_kib=mem.get("MemAvailable"),
        kernel_release=(fs.read("/proc/sys/kernel/osrelease") or "").strip() or None,
        cmdline=tuple((fs.read("/proc/cmdline") or "").split()),
        bootloader=_bootloader(fs),
        interrupt_remapping=any(
            " IR-" in line or line.lstrip().startswith("IR-") for line in interrupts.splitlines()
        ),
        kernel_log=tuple(
            line.strip()
            for path in _KERNEL_LOGS
            for line in (fs.read(path) or "").splitlines()
            if any(p in line for p in IR_LOG_PHRASES)
        ),
        iommu_units=tuple(fs.listdir("/sys/class/iommu")),
        iommu_groups={
            group: tuple(fs.listdir(f"/sys/kernel/iommu_groups/{group}/devices"))
            for group in fs.listdir("/sys/kernel/iommu_groups")
        },
        modules=frozenset(fs.listdir("/sys/module")),
        modprobe=_conf_lines(fs, "/etc/modprobe.d"),
        modules_load=_modules_load(fs),
        iomem=_iomem(fs.read("/proc/iomem") or ""),
        pci={addr: _pci(fs, addr) for addr in fs.listdir("/sys/bus/pci/devices")},
        vm_hostpci=_vm_hostpci(fs),
    )


@dataclass(frozen=True)
class _Cpu:
    model: str | None
    vendor: str | None
    flags: frozenset[str]
    threads: int
    cores: int | None


def _cpuinfo(text: str) -> _Cpu:
    model = vendor = None
    flags: frozenset[str] = frozenset()
    threads = 0
    per_socket: int | None = None
    sockets: set[str] = set()
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "processor":
            threads += 1
        elif key == "model name" and model is None:
            model = value
        elif key == "vendor_id" and vendor is None:
            vendor = value
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
        elif key == "cpu cores" and value.isdigit():
            per_socket = int(value)
        elif key == "physical id":
            sockets.add(value)
    cores = None if per_socket is None else per_socket * max(len(sockets), 1)
    return _Cpu(model, vendor, flags, threads, cores)


def _meminfo(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        words = rest.split()
        if words and words[0].isdigit():
            out[key.strip()] = int(words[0])  # kB, as the kernel writes it
    return out


def _bootloader(fs: HostFs) -> str:
    # proxmox-boot-tool hosts (ZFS root on UEFI) take the command line from
    # /etc/kernel/cmdline; GRUB hosts from /etc/default/grub.
    if fs.exists("/etc/kernel/cmdline"):
        return "systemd-boot"
    if fs.exists("/etc/default/grub"):
        return "grub"
    return "unknown"


def _conf_lines(fs: HostFs, directory: str) -> tuple[tuple[str, str], ...]:
    out = []
    for name in fs.listdir(directory):
        if not name.endswith(".conf"):
            continue
        path = f"{directory}/{name}"
        text = (fs.read(path) or "").replace("\\\n", " ")
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                out.append((path, line))
    return tuple(out)


def _modules_load(fs: HostFs) -> frozenset[str]:
    names = set()
    texts = [fs.read("/etc/modules") or ""]
    texts += [
        fs.read(f"/etc/modules-load.d/{n}") or ""
        for n in fs.listdir("/etc/modules-load.d")
        if n.endswith(".conf")
    ]
    for text in texts:
        for line in text.splitlines():
            word = line.split("#", 1)[0].strip().split(" ", 1)[0]
            if word and not word.startswith(";"):
                names.add(word.replace("-", "_"))
    return frozenset(names)


def _iomem(text: str) -> tuple[IomemRange, ...]:
    out = []
    for line in text.splitlines():
        span, sep, name = line.strip().partition(" : ")
        start, dash, end = span.partition("-")
        if not sep or not dash:
            continue
        try:
            out.append(IomemRange(int(start, 16), int(end, 16), name.strip()))
        except ValueError:
            continue
    return tuple(out)


def _pci(fs: HostFs, addr: str) -> PciFacts:
    base = f"/sys/bus/pci/devices/{addr}"

    def text(name: str) -> str | None:
        value = fs.read(f"{base}/{name}")
        return None if value is None else value.strip()

    bars = []
    for line in (text("resource") or "").splitlines()[:6]:
        words = line.split()
        try:
            bars.append((int(words[0], 16), int(words[1], 16)))
        except (IndexError, ValueError):
            bars.append((0, 0))
    return PciFacts(
        address=addr,
        vendor=text("vendor") or "",
        device=text("device") or "",
        class_code=text("class") or "",
        driver=fs.link_name(f"{base}/driver"),
        iommu_group=fs.link_name(f"{base}/iommu_group"),
        boot_vga=text("boot_vga") == "1",
        reset_method=text("reset_method"),
        bars=tuple(bars),
        is_bridge=fs.exists(f"{base}/pci_bus"),
    )


def _vm_hostpci(fs: HostFs) -> dict[int, dict[str, str]]:
    out: dict[int, dict[str, str]] = {}
    directory = "/etc/pve/qemu-server"
    for name in fs.listdir(directory):
        stem, dot, ext = name.partition(".")
        if ext != "conf" or not dot or not stem.isdigit():
            continue
        found = {}
        for line in (fs.read(f"{directory}/{name}") or "").splitlines():
            if line.startswith("["):
                break  # a snapshot section: not the current config
            match = _HOSTPCI.match(line.strip())
            if match:
                found[match.group(1)] = match.group(2).strip()
        out[int(stem)] = found
    return out
