"""GPU passthrough readiness: the check ids of docs/passthrough.md, as pure verdicts.

Each ``check_*`` function takes plain data (:class:`HostFacts` read from the
host's files, the devices the inventory passes to each guest) and returns
:class:`Check` results; none of them reads a file or calls the API. Every
non-PASS result carries a concrete fix: the kernel command line to change
and where, the exact ``options vfio-pci ids=...`` line with the ids read
from sysfs, the ``qm set`` to run. :func:`check_passthrough` at the end is
the one place that gathers the facts (host files, the API when reachable)
and runs them all; ``apply`` calls it to refuse a passthrough VM on FAIL.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nixmox.adapters.hostfacts import HostFacts, PciFacts, read_host
from nixmox.adapters.hostfs import HostFs
from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.cluster import read_guests
from nixmox.adapters.proxmox.permissions import granted, holds
from nixmox.core.errors import NixmoxError
from nixmox.core.verdict import Check, Status
from nixmox.core.words import plural
from nixmox.inventory.model import Guest, Inventory
from nixmox.passthrough.mappings import check_mapping, map_entries, node_paths

#: The check ids of docs/passthrough.md, in the order they run (stable interface).
CHECK_IDS = (
    "cpu-virtualization",
    "kernel-cmdline",
    "iommu-present",
    "interrupt-remapping",
    "vfio-modules",
    "acs-override",
    "resource-mapping",
    "device-present",
    "iommu-group-clean",
    "host-driver",
    "vfio-early-claim",
    "boot-framebuffer",
    "reset-method",
    "resizable-bar",
    "device-exclusive",
    "memory-headroom",
)
#: The cross-check of the same devices against ``/nodes/{node}/hardware/pci``.
API_CHECK = "pci-api-match"

HOST = "host"
#: Host drivers that hold a GPU so that vfio-pci cannot take it cleanly.
GPU_HOST_DRIVERS = frozenset({"nvidia", "nouveau", "nvidiafb", "amdgpu", "radeon"})
#: Drivers a ``softdep DRIVER pre: vfio-pci`` may name for each GPU vendor.
_VENDOR_DRIVERS = {
    "0x10de": ("nouveau", "nvidia", "nvidiafb", "nvidia_drm", "snd_hda_intel"),
    "0x1002": ("amdgpu", "radeon", "snd_hda_intel"),
    "0x8086": ("i915", "xe", "snd_hda_intel"),
}
#: Class prefixes each inventory role accepts (``0x0300xx`` VGA, ``0x0302xx`` 3D, ...).
ROLE_CLASSES = {
    "gpu": ("0x0300", "0x0302", "0x0380"),
    "audio": ("0x0403",),
    "usb": ("0x0c03",),
    "nic": ("0x02",),
    "storage": ("0x01",),
}
#: Names /proc/iomem gives a firmware framebuffer that keeps the GPU's BAR busy.
FRAMEBUFFERS = ("BOOTFB", "efifb", "simplefb", "simpledrm", "vesafb")
#: BAR1 of a GPU without Resizable BAR is 256 MiB.
REBAR_LIMIT = 256 * 1024**2
#: VFIO pins all guest RAM; the host needs this much besides.
HOST_RESERVE_MIB = 2048
#: Proxmox's default VM memory when the config says none.
DEFAULT_VM_MEMORY_MIB = 2048
#: AMD GPU families with the reset bug (vendor-reset supports them): device id ranges.
_AMD_RESET_BUG = (
    (0x67C0, 0x67FF),  # Polaris 10/11
    (0x6980, 0x699F),  # Polaris 12
    (0x6FDF, 0x6FDF),  # Polaris 20 XL
    (0x6860, 0x687F),  # Vega 10
    (0x66A0, 0x66AF),  # Vega 20
    (0x69A0, 0x69AF),  # Vega 12
    (0x7310, 0x731F),  # Navi 10
    (0x7340, 0x734F),  # Navi 14
    (0x7360, 0x7362),  # Navi 12
)


# -- what the inventory passes ---------------------------------------------------


@dataclass(frozen=True)
class PassedDevice:
    """One ``hostpciN`` of a guest, resolved to the functions the host has."""

    index: int
    spec: str  # as the inventory writes it: 0000:01:00 (all functions) or 0000:01:00.0
    functions: tuple[str, ...]  # present in sysfs; empty when none is
    x_vga: bool = False

    @property
    def key(self) -> str:
        return f"hostpci{self.index}"


@dataclass(frozen=True)
class PassedGuest:
    """A guest that gets PCI devices, and what matters for them."""

    name: str
    vmid: int
    memory_mib: int | None
    running: bool
    devices: tuple[PassedDevice, ...]

    @property
    def functions(self) -> tuple[str, ...]:
        return tuple(f for d in self.devices for f in d.functions)

    def subject(self, device: PassedDevice, function: str | None = None) -> str:
        return f"{self.name} ({self.vmid}) {device.key} {function or device.spec}"


def covers(spec: str, function: str) -> bool:
    """Whether a hostpci address (``0000:01:00`` = every function) includes ``function``."""
    spec, function = spec.lower(), function.lower()
    return spec == function or ("." not in spec and function.startswith(spec + "."))


def resolve_functions(spec: str, present: Iterable[str]) -> tuple[str, ...]:
    """The functions of ``present`` a hostpci address means, sorted."""
    return tuple(sorted(p for p in present if covers(spec, p)))


def passed_guest(
    guest: Guest,
    present: Iterable[str],
    running: bool,
    mapped: Mapping[int, Sequence[str]] | None = None,
) -> PassedGuest:
    """``guest``'s hostpci entries resolved against the host's functions: a raw address
    as written, a ``mapping`` through ``mapped`` (hostpci index -> the addresses the
    mapping names on the guest's node; a mapping that resolves to nothing is left out,
    its resource-mapping check says why)."""
    present = list(present)
    devices = []
    for n, pci in enumerate(guest.hostpci):
        if pci.mapping is not None:
            specs = list((mapped or {}).get(n, ()))
        else:
            specs = [] if pci.device is None else [pci.device.lower()]
        if not specs:
            continue
        functions = sorted({f for spec in specs for f in resolve_functions(spec, present)})
        devices.append(PassedDevice(n, ";".join(specs), tuple(functions), bool(pci.x_vga)))
    return PassedGuest(guest.name, guest.vmid, guest.memory, running, tuple(devices))


def _is_display(pci: PciFacts | None) -> bool:
    return pci is not None and pci.class_code.lower().startswith("0x03")


def each_function(
    facts: HostFacts, guest: PassedGuest, *, gpus_only: bool = False
) -> Iterator[tuple[PciFacts, str]]:
    """Every passed function the host has (only display ones with ``gpus_only``), and
    the subject its checks report under."""
    for dev in guest.devices:
        for fn in dev.functions:
            pci = facts.pci[fn]
            if not gpus_only or _is_display(pci):
                yield pci, guest.subject(dev, fn)


# -- fixes that recur ------------------------------------------------------------


def cmdline_fix(facts: HostFacts, *, add: Sequence[str] = (), remove: Sequence[str] = ()) -> str:
    """How to change this host's kernel command line, for its boot loader."""
    change = " and ".join([*(f"add `{w}`" for w in add), *(f"remove `{w}`" for w in remove)])
    if facts.bootloader == "grub":
        where = "GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub, run `update-grub`"
    elif facts.bootloader == "systemd-boot":
        where = "/etc/kernel/cmdline, run `proxmox-boot-tool refresh`"
    else:
        where = (
            "the kernel command line (/etc/kernel/cmdline and `proxmox-boot-tool refresh`, "
            "or /etc/default/grub and `update-grub`)"
        )
    return f"{change} in {where}, then reboot"


INITRAMFS = "`update-initramfs -u -k all`, then reboot"


# -- host-wide checks --------------------------------------------------------------


def check_cpu_virtualization(facts: HostFacts) -> Check:
    """``svm`` (AMD-V) or ``vmx`` (VT-x) among the CPU flags."""
    found = sorted(facts.cpu_flags & {"svm", "vmx"})
    if found:
        return Check("cpu-virtualization", Status.PASS, HOST, f"CPU flag {found[0]} present")
    return Check(
        "cpu-virtualization",
        Status.FAIL,
        HOST,
        "neither svm nor vmx in /proc/cpuinfo: hardware virtualization is off",
        "enable SVM Mode (AMD) or Intel Virtualization Technology (VT-x) in the firmware setup",
    )


def check_kernel_cmdline(facts: HostFacts) -> Check:
    """No ``iommu=off`` and the like; ``iommu=pt`` recommended."""
    off = [w for w in facts.cmdline if w in ("iommu=off", "amd_iommu=off", "intel_iommu=off")]
    if off:
        return Check(
            "kernel-cmdline",
            Status.FAIL,
            HOST,
            f"the kernel command line turns the IOMMU off: {' '.join(off)}",
            cmdline_fix(facts, remove=off),
        )
    if "iommu=pt" not in facts.cmdline:
        return Check(
            "kernel-cmdline",
            Status.INFO,
            HOST,
            "iommu=pt is not set (host devices go through IOMMU translation too)",
            cmdline_fix(facts, add=["iommu=pt"]),
        )
    return Check("kernel-cmdline", Status.PASS, HOST, "IOMMU not disabled, iommu=pt set")


def check_iommu_present(facts: HostFacts) -> Check:
    """What qemu-server checks first: an entry in /sys/class/iommu, and IOMMU groups."""
    if facts.iommu_units and facts.iommu_groups:
        return Check(
            "iommu-present",
            Status.PASS,
            HOST,
            f"IOMMU {', '.join(facts.iommu_units)}, {plural(len(facts.iommu_groups), 'group')}",
        )
    intel = facts.cpu_vendor == "GenuineIntel"
    return Check(
        "iommu-present",
        Status.FAIL,
        HOST,
        "IOMMU not present (/sys/class/iommu or /sys/kernel/iommu_groups is empty); "
        "Proxmox refuses: cannot prepare PCI pass-through",
        "enable "
        + ("VT-d" if intel else "IOMMU / AMD-Vi")
        + " in the firmware setup"
        + (f"; {cmdline_fix(facts, add=['intel_iommu=on'])}" if intel else ", then reboot"),
    )


def check_interrupt_remapping(facts: HostFacts) -> Check:
    """IR- interrupt domains, or the kernel saying remapping is on."""
    if facts.interrupt_remapping or facts.kernel_log:
        how = "IR- entries in /proc/interrupts" if facts.interrupt_remapping else "kernel log"
        return Check("interrupt-remapping", Status.PASS, HOST, f"enabled ({how})")
    unsafe = [
        path
        for path, line in facts.modprobe
        if _modprobe_options(line, "vfio_iommu_type1").get("allow_unsafe_interrupts") in ("1", "Y")
    ]
    if unsafe:
        return Check(
            "interrupt-remapping",
            Status.WARN,
            HOST,
            f"no interrupt remapping; allowed anyway by allow_unsafe_interrupts=1 in {unsafe[0]} "
            "(a guest can inject interrupts into the host)",
            "enable interrupt remapping (AMD-Vi / VT-d with x2APIC) in the firmware, then drop "
            f"allow_unsafe_interrupts from {unsafe[0]}",
        )
    return Check(
        "interrupt-remapping",
        Status.FAIL,
        HOST,
        "no interrupt remapping (no IR- entries in /proc/interrupts, nothing in the kernel log); "
        "vfio refuses to assign devices without it",
        "enable interrupt remapping (AMD-Vi / VT-d with x2APIC) in the firmware; only if the "
        "hardware cannot: `echo 'options vfio_iommu_type1 allow_unsafe_interrupts=1' > "
        "/etc/modprobe.d/iommu_unsafe_interrupts.conf`, then " + INITRAMFS,
    )


VFIO_MODULES = ("vfio", "vfio_iommu_type1", "vfio_pci")


def check_vfio_modules(facts: HostFacts) -> Check:
    """vfio, vfio_iommu_type1 and vfio_pci loaded; vfio_virqfd not listed on kernels >= 6.2."""
    missing = [m for m in VFIO_MODULES if m not in facts.modules]
    if missing:
        unlisted = [m for m in missing if m not in facts.modules_load]
        if unlisted:
            return Check(
                "vfio-modules",
                Status.FAIL,
                HOST,
                f"not loaded and not listed for boot: {', '.join(unlisted)}",
                f"`printf '%s\\n' {' '.join(unlisted)} >> /etc/modules`, "
                f"`modprobe -a {' '.join(missing)}`, then " + INITRAMFS,
            )
        return Check(
            "vfio-modules",
            Status.WARN,
            HOST,
            f"listed for boot but not loaded: {', '.join(missing)}",
            f"`modprobe -a {' '.join(missing)}` (or reboot)",
        )
    if "vfio_virqfd" in facts.modules_load and _kernel_at_least(facts.kernel_release, (6, 2)):
        return Check(
            "vfio-modules",
            Status.WARN,
            HOST,
            f"vfio_virqfd is listed for loading, but kernel {facts.kernel_release} has it "
            "built into vfio (the module does not exist since 6.2)",
            "remove vfio_virqfd from /etc/modules (and /etc/modules-load.d)",
        )
    return Check("vfio-modules", Status.PASS, HOST, "vfio, vfio_iommu_type1, vfio_pci loaded")


def _kernel_at_least(release: str | None, wanted: tuple[int, int]) -> bool:
    if not release:
        return False
    parts = release.split("-", 1)[0].split(".")
    try:
        return (int(parts[0]), int(parts[1])) >= wanted
    except (IndexError, ValueError):
        return False


def check_acs_override(facts: HostFacts) -> Check:
    """pcie_acs_override= makes IOMMU groups look clean when they are not."""
    found = [w for w in facts.cmdline if w.startswith("pcie_acs_override=")]
    if found:
        return Check(
            "acs-override",
            Status.WARN,
            HOST,
            f"{found[0]} on the kernel command line: the isolation the IOMMU groups show is "
            "fictitious (devices can still reach each other by DMA)",
            "move the card to a slot with a clean group, then " + cmdline_fix(facts, remove=found),
        )
    return Check("acs-override", Status.PASS, HOST, "no pcie_acs_override")


# -- per-device checks -------------------------------------------------------------


def check_device_present(
    facts: HostFacts, guest: PassedGuest, roles: Mapping[str, str]
) -> list[Check]:
    """Each configured device exists; its class fits the role the inventory gives it."""
    out = []
    for dev in guest.devices:
        if not dev.functions:
            out.append(
                Check(
                    "device-present",
                    Status.FAIL,
                    guest.subject(dev),
                    f"no PCI device at {dev.spec} in /sys/bus/pci/devices",
                    "find the card with `lspci -nn` (addresses change when cards or slots "
                    f"change) and correct guests.hostpci ({dev.spec}) in the inventory",
                ),
            )
            continue
        for fn in dev.functions:
            pci = facts.pci[fn]
            role = roles.get(fn)
            wanted = ROLE_CLASSES.get(role or "", ())
            desc = f"{pci.ids} class {pci.class_code}"
            if wanted and not pci.class_code.lower().startswith(wanted):
                out.append(
                    Check(
                        "device-present",
                        Status.FAIL,
                        guest.subject(dev, fn),
                        f"{desc} is not a {role} (class {' or '.join(w + 'xx' for w in wanted)})",
                        f"check the address with `lspci -nns {fn}`; correct "
                        "nodes.hardware.pci or guests.hostpci in the inventory",
                    )
                )
            else:
                out.append(
                    Check(
                        "device-present",
                        Status.PASS,
                        guest.subject(dev, fn),
                        desc + (f", role {role}" if role else ""),
                    )
                )
    return out


def check_iommu_group_clean(facts: HostFacts, guest: PassedGuest) -> list[Check]:
    """Every member of each passed device's group goes to the same VM or is a bridge."""
    out = []
    seen: set[str] = set()
    mine = set(guest.functions)
    for dev in guest.devices:
        for fn in dev.functions:
            group = facts.pci[fn].iommu_group
            if group is None:
                out.append(
                    Check(
                        "iommu-group-clean",
                        Status.FAIL,
                        guest.subject(dev, fn),
                        "in no IOMMU group (is the IOMMU on?)",
                        "enable the IOMMU first (see iommu-present)",
                    )
                )
                continue
            if group in seen:
                continue
            seen.add(group)
            members = facts.iommu_groups.get(group, (fn,))
            intruders = [
                m
                for m in members
                if m not in mine and not (m in facts.pci and facts.pci[m].is_bridge)
            ]
            if not intruders:
                out.append(
                    Check(
                        "iommu-group-clean",
                        Status.PASS,
                        guest.subject(dev, fn),
                        f"IOMMU group {group}: {', '.join(members)}",
                    )
                )
                continue
            named = ", ".join(_describe(facts, m) for m in intruders)
            out.append(
                Check(
                    "iommu-group-clean",
                    Status.FAIL,
                    guest.subject(dev, fn),
                    f"IOMMU group {group} also holds {named}: Proxmox would take "
                    f"{'it' if len(intruders) == 1 else 'them'} from the host at VM start",
                    "move the card to a slot whose IOMMU group holds only it (a CPU-attached "
                    "slot), or pass "
                    + ", ".join(intruders)
                    + f" to {guest.name} as well; pcie_acs_override only hides the problem",
                )
            )
    return out


def _describe(facts: HostFacts, addr: str) -> str:
    pci = facts.pci.get(addr)
    if pci is None:
        return addr
    driver = f", driver {pci.driver}" if pci.driver else ""
    return f"{addr} (class {pci.class_code}{driver})"


def check_host_driver(facts: HostFacts, guest: PassedGuest) -> list[Check]:
    """No host GPU driver holds a passed function."""
    out = []
    for pci, subject in each_function(facts, guest):
        if pci.driver is None or pci.driver == "vfio-pci":
            what = "bound to vfio-pci" if pci.driver else "no host driver bound"
            out.append(Check("host-driver", Status.PASS, subject, what))
        elif pci.driver in GPU_HOST_DRIVERS:
            out.append(
                Check(
                    "host-driver",
                    Status.FAIL,
                    subject,
                    f"the host's {pci.driver} driver holds it (unbinding a GPU driver "
                    "from a live console hangs or crashes the host)",
                    f"`echo 'blacklist {pci.driver}' >> /etc/modprobe.d/blacklist-gpu.conf`, "
                    f"claim it early (`options vfio-pci ids={pci.ids}` in "
                    "/etc/modprobe.d/vfio.conf), then " + INITRAMFS,
                )
            )
        else:
            out.append(
                Check(
                    "host-driver",
                    Status.INFO,
                    subject,
                    f"bound to {pci.driver}; Proxmox rebinds it to vfio-pci at VM start",
                    f"to claim it at boot instead: add {pci.ids} to `options vfio-pci ids=` "
                    "in /etc/modprobe.d/vfio.conf",
                )
            )
    return out


def _modprobe_options(line: str, module: str) -> dict[str, str]:
    """``options MODULE k=v ...`` as a dict (``-`` and ``_`` alike, as modprobe treats them)."""
    words = line.split()
    if len(words) < 3 or words[0] != "options":
        return {}
    if words[1].replace("-", "_") != module.replace("-", "_"):
        return {}
    return dict(w.partition("=")[::2] for w in words[2:])


def claimed_ids(facts: HostFacts) -> list[str]:
    """``vendor:device`` ids that ``options vfio-pci ids=`` claims, in file order."""
    ids: list[str] = []
    for _path, line in facts.modprobe:
        for item in _modprobe_options(line, "vfio_pci").get("ids", "").split(","):
            item = item.strip().lower()
            if item and item not in ids:
                ids.append(item)
    return ids


def _softdeps(facts: HostFacts) -> set[str]:
    """Modules that load only after vfio-pci (``softdep DRIVER pre: vfio-pci``)."""
    out = set()
    for _path, line in facts.modprobe:
        words = line.split()
        if len(words) >= 4 and words[0] == "softdep" and "pre:" in words:
            pre = words[words.index("pre:") + 1 :]
            if any(w.replace("-", "_") == "vfio_pci" for w in pre):
                out.add(words[1].replace("-", "_"))
    return out


def check_vfio_early_claim(facts: HostFacts, guest: PassedGuest) -> list[Check]:
    """vfio-pci claims the GPU (all its functions) before any host driver can."""
    out = []
    claimed = claimed_ids(facts)
    softdeps = _softdeps(facts)
    for dev in guest.devices:
        gpus = [facts.pci[f] for f in dev.functions if _is_display(facts.pci[f])]
        if not gpus:
            continue  # USB controllers and NICs are rebound at VM start without trouble
        ids = list(dict.fromkeys(facts.pci[f].ids for f in dev.functions))
        missing = [i for i in ids if i not in claimed]
        drivers = _VENDOR_DRIVERS.get(gpus[0].vendor.lower(), ())
        soft = sorted(softdeps.intersection(drivers))
        subject = guest.subject(dev)
        if not missing:
            out.append(
                Check("vfio-early-claim", Status.PASS, subject, f"vfio-pci ids={','.join(ids)}")
            )
        elif soft:
            out.append(
                Check(
                    "vfio-early-claim",
                    Status.PASS,
                    subject,
                    f"softdep {soft[0]} pre: vfio-pci loads vfio-pci first",
                )
            )
        else:
            line = f"options vfio-pci ids={','.join([*claimed, *missing])}"
            out.append(
                Check(
                    "vfio-early-claim",
                    Status.WARN,
                    subject,
                    f"nothing claims {', '.join(missing)} for vfio-pci at boot: the host driver "
                    "may grab the GPU first",
                    f"put `{line}` in /etc/modprobe.d/vfio.conf"
                    + (f" (and `softdep {drivers[0]} pre: vfio-pci`)" if drivers else "")
                    + ", then "
                    + INITRAMFS,
                )
            )
    return out


def _sysfb_blacklisted(cmdline: Iterable[str]) -> bool:
    for word in cmdline:
        key, _, value = word.partition("=")
        if key == "initcall_blacklist" and "sysfb_init" in value.split(","):
            return True
    return False


def check_boot_framebuffer(facts: HostFacts, guest: PassedGuest) -> list[Check]:
    """The boot GPU's memory is not held by a firmware framebuffer."""
    out = []
    for pci, subject in each_function(facts, guest, gpus_only=True):
        if not pci.boot_vga:
            out.append(
                Check("boot-framebuffer", Status.PASS, subject, "not the boot GPU (boot_vga 0)")
            )
            continue
        held = [
            r
            for r in facts.iomem
            if any(r.name.startswith(fb) for fb in FRAMEBUFFERS)
            and any(s <= r.start and r.end <= e for s, e in pci.bars if (s, e) != (0, 0))
        ]
        blacklisted = _sysfb_blacklisted(facts.cmdline)
        if blacklisted and not held:
            out.append(
                Check(
                    "boot-framebuffer",
                    Status.PASS,
                    subject,
                    "boot GPU; initcall_blacklist=sysfb_init keeps the firmware framebuffer off",
                )
            )
            continue
        problems = []
        if not blacklisted:
            problems.append("initcall_blacklist=sysfb_init is not set")
        if held:
            problems.append(
                "/proc/iomem shows "
                + ", ".join(f"{r.name} at {r.start:x}-{r.end:x}" for r in held)
                + " inside its BARs"
            )
        out.append(
            Check(
                "boot-framebuffer",
                Status.FAIL,
                subject,
                "the boot GPU's memory is held by the firmware framebuffer ("
                + "; ".join(problems)
                + "); the VM fails with 'BAR 1: can't reserve'",
                cmdline_fix(facts, add=["initcall_blacklist=sysfb_init"])
                if not blacklisted
                else "a framebuffer driver still claims it: "
                + "`echo 'blacklist simpledrm' >> /etc/modprobe.d/blacklist-gpu.conf`, "
                + INITRAMFS,
            )
        )
    return out


def _amd_reset_bug(pci: PciFacts) -> bool:
    if pci.vendor.lower() != "0x1002" or not _is_display(pci):
        return False
    try:
        device = int(pci.device, 16)
    except ValueError:
        return False
    return any(lo <= device <= hi for lo, hi in _AMD_RESET_BUG)


def check_reset_method(facts: HostFacts, guest: PassedGuest) -> list[Check]:
    """Each function can be reset; AMD GPUs of the reset-bug families need vendor_reset."""
    out = []
    for pci, subject in each_function(facts, guest):
        if _amd_reset_bug(pci) and "vendor_reset" not in facts.modules:
            out.append(
                Check(
                    "reset-method",
                    Status.WARN,
                    subject,
                    f"{pci.ids} is an AMD GPU with the reset bug and vendor_reset is not "
                    "loaded: the second VM start hangs",
                    "install vendor-reset (`apt install pve-headers dkms`, build "
                    "gnif/vendor-reset), add vendor-reset to /etc/modules, and "
                    f"`echo device_specific > /sys/bus/pci/devices/{pci.address}/reset_method` "
                    "before each VM start (a hookscript)",
                )
            )
        elif pci.reset_method:
            out.append(Check("reset-method", Status.PASS, subject, f"reset: {pci.reset_method}"))
        elif pci.reset_method is None:
            out.append(
                Check(
                    "reset-method",
                    Status.INFO,
                    subject,
                    "no reset_method file (kernel older than 5.15): cannot tell",
                    "upgrade to a current Proxmox kernel",
                )
            )
        else:
            out.append(
                Check(
                    "reset-method",
                    Status.WARN,
                    subject,
                    "no reset method: after the VM stops, only a host reboot resets it",
                    "pass every function of the card together (hostpci without a function "
                    "number) so a bus reset is possible, or put the card in another slot",
                )
            )
    return out


def check_resizable_bar(facts: HostFacts, guest: PassedGuest) -> list[Check]:
    """A GPU's BAR1 of more than 256 MiB means Resizable BAR is on."""
    out = []
    for pci, subject in each_function(facts, guest, gpus_only=True):
        size = pci.bar_size(1)
        if size <= REBAR_LIMIT:
            out.append(Check("resizable-bar", Status.PASS, subject, f"BAR1 {size // 1024**2} MiB"))
            continue
        out.append(
            Check(
                "resizable-bar",
                Status.WARN,
                subject,
                f"BAR1 is {size // 1024**2} MiB: Resizable BAR is on, which breaks many "
                "VFIO guests (code 43, black screen)",
                "disable Re-Size BAR Support in the firmware setup, or shrink it before the VM "
                f"starts: `echo 8 > /sys/bus/pci/devices/{pci.address}/resource1_resize` "
                "(256 MiB)",
            )
        )
    return out


def _hostpci_addresses(value: str, mapped: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """The PCI addresses of one ``hostpciN:`` value (``host=`` form and ``;`` lists too;
    ``mapping=ID`` through ``mapped``: mapping id -> its addresses on this node)."""
    first = value.split(",", 1)[0]
    key, eq, rest = first.partition("=")
    if eq:
        if key == "mapping":
            return list((mapped or {}).get(rest, ()))
        if key != "host":
            return []
        first = rest
    out = []
    for addr in first.split(";"):
        addr = addr.strip().lower()
        if addr:
            out.append(addr if addr.count(":") == 2 else "0000:" + addr)
    return out


def check_device_exclusive(
    facts: HostFacts,
    guest: PassedGuest,
    running: frozenset[int],
    mapped: Mapping[str, Sequence[str]] | None = None,
) -> list[Check]:
    """No other VM's config passes the same device (FAIL when that VM runs)."""
    out = []
    for dev in guest.devices:
        for fn in dev.functions:
            others = [
                (vmid, key)
                for vmid, entries in sorted(facts.vm_hostpci.items())
                if vmid != guest.vmid
                for key, value in sorted(entries.items())
                if any(covers(a, fn) for a in _hostpci_addresses(value, mapped))
            ]
            subject = guest.subject(dev, fn)
            if not others:
                out.append(Check("device-exclusive", Status.PASS, subject, "no other VM uses it"))
                continue
            live = [v for v, _ in others if v in running]
            used = ", ".join(f"VM {v} ({k})" for v, k in others)
            out.append(
                Check(
                    "device-exclusive",
                    Status.FAIL if live else Status.WARN,
                    subject,
                    f"also passed to {used}"
                    + (f"; VM {live[0]} is running" if live else "; only one of them can run"),
                    " ; ".join(f"`qm set {v} --delete {k}`" for v, k in others),
                )
            )
    return out


def check_memory_headroom(facts: HostFacts, guest: PassedGuest) -> Check:
    """MemAvailable covers the VM's memory (all pinned by VFIO) plus 2 GiB for the host."""
    subject = f"{guest.name} ({guest.vmid})"
    memory = guest.memory_mib or DEFAULT_VM_MEMORY_MIB
    if guest.running:
        return Check(
            "memory-headroom", Status.PASS, subject, f"running: its {memory} MiB are pinned already"
        )
    if facts.mem_available_kib is None:
        return Check(
            "memory-headroom",
            Status.UNKNOWN,
            subject,
            "no MemAvailable in /proc/meminfo",
            "check /proc/meminfo",
        )
    available = facts.mem_available_kib // 1024
    need = memory + HOST_RESERVE_MIB
    if available >= need:
        return Check(
            "memory-headroom",
            Status.PASS,
            subject,
            f"{available} MiB available >= {memory} MiB + {HOST_RESERVE_MIB} MiB for the host",
        )
    fits = max(available - HOST_RESERVE_MIB, 0) // 1024 * 1024
    return Check(
        "memory-headroom",
        Status.FAIL,
        subject,
        f"{available} MiB available, the VM needs {memory} MiB pinned plus "
        f"{HOST_RESERVE_MIB} MiB for the host: the start fails (VFIO pins all guest RAM)",
        f"free {need - available} MiB (stop other guests, cap the ZFS ARC with "
        "`options zfs zfs_arc_max=BYTES` in /etc/modprobe.d/zfs.conf), or "
        f"`qm set {guest.vmid} --memory {fits}` and lower guests.memory to match",
    )


# -- the API cross-check -----------------------------------------------------------


def check_api_match(
    facts: HostFacts, guest: PassedGuest, listing: Sequence[Mapping[str, Any]] | None, error: str
) -> list[Check]:
    """Proxmox's ``/hardware/pci`` sees each function as sysfs does (ids, class, group)."""
    if listing is None:
        return [
            Check(
                API_CHECK,
                Status.UNKNOWN,
                f"{guest.name} ({guest.vmid})",
                f"the Proxmox API is not reachable: {error}",
                "see the proxmox checks; the file checks above still ran",
            )
        ]
    by_id = {str(d.get("id", "")).lower(): d for d in listing}
    out = []
    for dev in guest.devices:
        for fn in dev.functions:
            pci = facts.pci[fn]
            subject = guest.subject(dev, fn)
            seen = by_id.get(fn)
            if seen is None:
                out.append(
                    Check(
                        API_CHECK,
                        Status.FAIL,
                        subject,
                        "sysfs has it, Proxmox's /hardware/pci does not",
                        "check that doctor reads the right host (--host-root) and node",
                    )
                )
                continue
            group = seen.get("iommugroup", -1)
            api = (
                str(seen.get("vendor", "")).lower(),
                str(seen.get("device", "")).lower(),
                str(seen.get("class", "")).lower(),
                None if group in (-1, None) else str(group),
            )
            mine = (pci.vendor.lower(), pci.device.lower(), pci.class_code.lower(), pci.iommu_group)
            if api == mine:
                out.append(
                    Check(API_CHECK, Status.PASS, subject, f"API agrees: {pci.ids}, group {group}")
                )
                continue
            names = ("vendor", "device", "class", "IOMMU group")
            diffs = [f"{n} {a} vs {m}" for n, a, m in zip(names, api, mine, strict=True) if a != m]
            out.append(
                Check(
                    API_CHECK,
                    Status.FAIL,
                    subject,
                    "the API and sysfs disagree (API vs sysfs): " + "; ".join(diffs),
                    "make sure --host-root is this node's current state; after a hardware or "
                    "firmware change, reboot and run doctor again",
                )
            )
    return out


# -- everything, for one inventory -------------------------------------------------


def host_checks(facts: HostFacts) -> list[Check]:
    """The checks that concern the host as a whole."""
    return [
        check_cpu_virtualization(facts),
        check_kernel_cmdline(facts),
        check_iommu_present(facts),
        check_interrupt_remapping(facts),
        check_vfio_modules(facts),
        check_acs_override(facts),
    ]


def guest_checks(
    facts: HostFacts,
    guest: PassedGuest,
    roles: Mapping[str, str],
    running: frozenset[int],
    mapped: Mapping[str, Sequence[str]] | None = None,
) -> list[Check]:
    """The per-device checks for one guest, in table order (``mapped``: each resource
    mapping's addresses on the guest's node, for the other VMs' ``mapping=`` entries)."""
    present = PassedGuest(
        guest.name,
        guest.vmid,
        guest.memory_mib,
        guest.running,
        tuple(d for d in guest.devices if d.functions),
    )
    return [
        *check_device_present(facts, guest, roles),
        *check_iommu_group_clean(facts, present),
        *check_host_driver(facts, present),
        *check_vfio_early_claim(facts, present),
        *check_boot_framebuffer(facts, present),
        *check_reset_method(facts, present),
        *check_resizable_bar(facts, present),
        *check_device_exclusive(facts, present, running, mapped),
        check_memory_headroom(facts, present),
    ]


def host_root_is_node(facts: HostFacts, inv: Inventory, node: str) -> bool:
    """Whether the host seen through --host-root is ``node``."""
    if facts.hostname is not None and any(n.name == facts.hostname for n in inv.nodes):
        return facts.hostname == node
    return len({g.node for g in inv.guests} | {n.name for n in inv.nodes}) <= 1


def check_passthrough(inv: Inventory, host_root: Path, api: Proxmox | None) -> list[Check]:
    """Every passthrough check for the devices ``inv`` passes to its guests.

    Host files are read under ``host_root``; ``api`` (``None`` when the API
    is unreachable) adds the running state of guests and the cross-check
    against ``/nodes/{node}/hardware/pci``.
    """
    wanting = [g for g in inv.guests if g.hostpci]
    if not wanting:
        return [Check("device-present", Status.INFO, HOST, "no guest passes a PCI device")]
    facts = read_host(HostFs(host_root))
    running, listings, error = _api_state(api, {g.node for g in wanting})
    maps = _mappings(api, any(p.mapping for g in wanting for p in g.hostpci))
    roles = {
        p.address.lower(): p.role
        for node in inv.nodes
        if node.hardware is not None
        for p in node.hardware.pci
    }
    checks = host_checks(facts)
    for guest in wanting:
        subject = f"{guest.name} ({guest.vmid})"
        if not host_root_is_node(facts, inv, guest.node):
            checks.append(
                Check(
                    "device-present",
                    Status.INFO,
                    subject,
                    f"on node {guest.node}, this host is {facts.hostname}",
                    f"run `nixmox doctor --only passthrough` on {guest.node}",
                )
            )
            continue
        listing = listings.get(guest.node)
        by_index: dict[int, list[str]] = {}
        for n, pci in enumerate(guest.hostpci):
            if pci.mapping is None:
                continue
            check, paths = check_mapping(
                f"{subject} hostpci{n}",
                pci.mapping,
                guest.node,
                None if pci.device is None else pci.device.lower(),
                maps.entries,
                maps.visible(pci.mapping),
                listing,
                maps.error,
            )
            checks.append(check)
            if not paths and maps.entries is None and pci.device is not None:
                # Mappings unread (no API): judge the device the inventory says it names.
                paths = [pci.device.lower()]
            by_index[n] = paths
        on_node = {
            mid: found
            for mid, entries in (maps.entries or {}).items()
            if (found := node_paths(entries, guest.node))
        }
        passed = passed_guest(guest, facts.pci, guest.vmid in running, by_index)
        checks += guest_checks(facts, passed, roles, running, on_node)
        checks += check_api_match(facts, passed, listings.get(guest.node), error)
    return checks


@dataclass(frozen=True)
class _Mappings:
    """``/cluster/mapping/pci`` as the token sees it (``entries`` None: not read, ``error``)."""

    entries: dict[str, list[dict[str, str]]] | None
    granted: Mapping[str, Mapping[str, Any]]
    error: str = ""

    def visible(self, mid: str) -> bool:
        # The index lists only what the token may audit, use or modify (PCI.pm ``index``).
        return holds(
            self.granted, f"/mapping/pci/{mid}", "Mapping.Audit|Mapping.Use|Mapping.Modify"
        )


def _mappings(api: Proxmox | None, wanted: bool) -> _Mappings:
    if not wanted:
        return _Mappings({}, {"/": {"Mapping.Audit": 1}})
    if api is None:
        return _Mappings(None, {}, "no connection")
    try:
        return _Mappings(map_entries(api.get("/cluster/mapping/pci") or []), granted(api))
    except NixmoxError as exc:
        return _Mappings(None, {}, str(exc))


def _api_state(
    api: Proxmox | None, nodes: set[str]
) -> tuple[frozenset[int], dict[str, list[dict[str, Any]]], str]:
    """Running VMIDs and each node's PCI listing (empty when the API cannot say), and why not."""
    if api is None:
        return frozenset(), {}, "no connection"
    try:
        running = frozenset(
            vmid for vmid, row in read_guests(api).items() if row.status == "running"
        )
        # An empty blacklist: PVE hides bridges and more by default, the check needs all.
        listings = {
            node: api.get(f"/nodes/{node}/hardware/pci", **{"pci-class-blacklist": ""})
            for node in sorted(nodes)
        }
    except NixmoxError as exc:
        return frozenset(), {}, str(exc)
    return running, listings, ""
