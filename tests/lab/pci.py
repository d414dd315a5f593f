"""The PCI devices of the lab's host: a Ryzen 9 5950X on an X570 board.

Laid out as ``lspci -nn`` and ``/sys/kernel/iommu_groups`` show such a host
with ACS on the CPU's root ports: bridges and functions of one device share a
group, the GPU and its HDMI audio sit alone in theirs, and the IOMMU itself
and the root complex belong to no group (PVE reports -1). Bus numbers follow
the inventory: GPU 01:00.x, the add-in USB card 03:00.0, and the I225-V NICs
05:00.0 / 06:00.0, which is why Linux names them enp5s0 / enp6s0.
"""

from __future__ import annotations

from typing import Any

PciDevice = dict[str, Any]

# Vendors as pci.ids names them.
AMD = ("0x1022", "Advanced Micro Devices, Inc. [AMD]")
NVIDIA = ("0x10de", "NVIDIA Corporation")
SAMSUNG = ("0x144d", "Samsung Electronics Co Ltd")
INTEL = ("0x8086", "Intel Corporation")
RENESAS = ("0x1912", "Renesas Technology Corp.")
ASUS = ("0x1043", "ASUSTeK Computer Inc.")
MSI = ("0x1462", "Micro-Star International Co., Ltd. [MSI]")

# (class, vendor, device id, device name, subsystem vendor, subsystem device): one
# model, for the devices the host has more than one of.
_Model = tuple[str, tuple[str, str], str, str, tuple[str, str], str]
DUMMY_HOST_BRIDGE: _Model = (
    "0x060000",
    AMD,
    "0x1482",
    "Starship/Matisse PCIe Dummy Host Bridge",
    AMD,
    "0x0000",
)
GPP_BRIDGE: _Model = ("0x060400", AMD, "0x1483", "Starship/Matisse GPP Bridge", AMD, "0x1453")
INTERNAL_GPP_BRIDGE: _Model = (
    "0x060400",
    AMD,
    "0x1484",
    "Starship/Matisse Internal PCIe GPP Bridge 0 to bus[E:B]",
    AMD,
    "0x1484",
)
NVME: _Model = (
    "0x010802",
    SAMSUNG,
    "0xa80a",
    "NVMe SSD Controller PM9A1/PM9A3/980PRO",
    SAMSUNG,
    "0xa801",
)
I225_V: _Model = ("0x020000", INTEL, "0x15f3", "Ethernet Controller I225-V", ASUS, "0x87d2")

# (address, class, vendor, device id, device name, subsystem vendor, subsystem device, iommu group)
_TABLE: list[tuple[str, str, tuple[str, str], str, str, tuple[str, str], str, int]] = [
    (
        "0000:00:00.0",
        "0x060000",
        AMD,
        "0x1480",
        "Starship/Matisse Root Complex",
        ASUS,
        "0x87c0",
        -1,
    ),
    ("0000:00:00.2", "0x080600", AMD, "0x1481", "Starship/Matisse IOMMU", ASUS, "0x87c0", -1),
    ("0000:00:01.0", *DUMMY_HOST_BRIDGE, 0),
    ("0000:00:01.1", *GPP_BRIDGE, 1),
    ("0000:00:01.2", *GPP_BRIDGE, 2),
    ("0000:00:03.0", *DUMMY_HOST_BRIDGE, 3),
    ("0000:00:03.1", *GPP_BRIDGE, 4),
    ("0000:00:07.0", *DUMMY_HOST_BRIDGE, 5),
    ("0000:00:07.1", *INTERNAL_GPP_BRIDGE, 6),
    ("0000:00:08.0", *DUMMY_HOST_BRIDGE, 7),
    ("0000:00:08.1", *INTERNAL_GPP_BRIDGE, 8),
    # SMBus and LPC bridge share a group on every AM4 board: harmless, nobody passes them through.
    ("0000:00:14.0", "0x0c0500", AMD, "0x790b", "FCH SMBus Controller", ASUS, "0x87c0", 9),
    ("0000:00:14.3", "0x060100", AMD, "0x790e", "FCH LPC Bridge", ASUS, "0x87c0", 9),
    *(
        (
            f"0000:00:18.{fn}",
            "0x060000",
            AMD,
            f"0x144{fn}",
            f"Matisse/Vermeer Data Fabric: Device 18h; Function {fn}",
            AMD,
            "0x0000",
            10,
        )
        for fn in range(8)
    ),
    (
        "0000:01:00.0",
        "0x030000",
        NVIDIA,
        "0x2504",
        "GA106 [GeForce RTX 3060 Lite Hash Rate]",
        MSI,
        "0x397d",
        11,
    ),
    (
        "0000:01:00.1",
        "0x040300",
        NVIDIA,
        "0x228e",
        "GA106 High Definition Audio Controller",
        MSI,
        "0x397d",
        11,
    ),
    ("0000:02:00.0", *NVME, 12),
    (
        "0000:03:00.0",
        "0x0c0330",
        RENESAS,
        "0x0015",
        "uPD720202 USB 3.0 Host Controller",
        RENESAS,
        "0x0015",
        13,
    ),
    ("0000:04:00.0", *NVME, 14),
    ("0000:05:00.0", *I225_V, 15),
    ("0000:06:00.0", *I225_V, 16),
    (
        "0000:07:00.0",
        "0x010601",
        AMD,
        "0x7901",
        "FCH SATA Controller [AHCI mode]",
        ASUS,
        "0x87c0",
        17,
    ),
    (
        "0000:08:00.0",
        "0x130000",
        AMD,
        "0x148a",
        "Starship/Matisse PCIe Dummy Function",
        ASUS,
        "0x87c0",
        18,
    ),
    (
        "0000:09:00.0",
        "0x130000",
        AMD,
        "0x1485",
        "Starship/Matisse Reserved SPP",
        ASUS,
        "0x87c0",
        19,
    ),
    (
        "0000:09:00.1",
        "0x108000",
        AMD,
        "0x1486",
        "Starship/Matisse Cryptographic Coprocessor PSPCPP",
        ASUS,
        "0x87c0",
        20,
    ),
    (
        "0000:09:00.3",
        "0x0c0330",
        AMD,
        "0x149c",
        "Matisse USB 3.0 Host Controller",
        ASUS,
        "0x87c0",
        21,
    ),
    (
        "0000:09:00.4",
        "0x040300",
        AMD,
        "0x1487",
        "Starship/Matisse HD Audio Controller",
        ASUS,
        "0x87c5",
        22,
    ),
]


def host_devices() -> list[PciDevice]:
    """A fresh copy of the host's devices, with every field PVE's verbose listing has.

    Each call returns new dicts, so a test may move a device into another IOMMU
    group (``device["iommugroup"] = 11``) or mark it mdev-capable without
    affecting other labs.
    """
    out: list[PciDevice] = []
    for addr, klass, vendor, device, name, subvendor, subdevice, group in _TABLE:
        out.append(
            {
                "id": addr,
                "class": klass,
                "vendor": vendor[0],
                "device": device,
                "subsystem_vendor": subvendor[0],
                "subsystem_device": subdevice,
                "iommugroup": group,
                "vendor_name": vendor[1],
                "device_name": name,
                "subsystem_vendor_name": subvendor[1],
                "subsystem_device_name": "",
            }
        )
    return out


# Fields PVE's lspci adds only with verbose=1 (names from pci.ids).
VERBOSE_FIELDS = ("vendor_name", "device_name", "subsystem_vendor_name", "subsystem_device_name")
# PVE's default pci-class-blacklist: memory controllers, bridges, processors.
DEFAULT_CLASS_BLACKLIST = "05;06;0b"
