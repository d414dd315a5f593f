"""Can a stopped VM with passed-through PCI devices be backed up now? Pure.

vzdump backs up a stopped VM by starting it paused (PVE::VZDump::QemuServer
with vm_start): its ``hostpci`` devices are bound to vfio and reset, and all
its memory is pinned. That start fails while another running VM holds one of
the devices (PVE::QemuServer::PCI::reserve_pci_usage: "already in use by
VMID"), or when the node lacks the memory; nixmox says so before asking.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

MIB = 1024**2
_HOSTPCI = re.compile(r"hostpci\d+")


def mapping_ids(config: Mapping[str, Any]) -> set[str]:
    """The PCI resource mappings a VM config's ``hostpci`` entries name."""
    return {
        str(value).split(",", 1)[0].removeprefix("mapping=")
        for key, value in config.items()
        if _HOSTPCI.fullmatch(key) and str(value).startswith("mapping=")
    }


def pci_devices(
    config: Mapping[str, Any], mapped: Mapping[str, Sequence[str]] | None = None
) -> set[str]:
    """The host devices of a VM config's ``hostpci`` entries, as ``bus:device``
    (``0000:01:00.1`` and ``01:00`` are the same card); a ``mapping=ID`` through
    ``mapped`` (mapping id -> its addresses on the VM's node), else left out."""
    found = set()
    for key, value in config.items():
        if not _HOSTPCI.fullmatch(key):
            continue
        first = str(value).split(",", 1)[0]
        if first.startswith("mapping="):
            devices = list((mapped or {}).get(first.removeprefix("mapping="), ()))
        else:
            devices = first.removeprefix("host=").split(";")
        for device in devices:
            if device and "=" not in device:
                found.add(device.removeprefix("0000:").split(".", 1)[0])
    return found


def blocker(
    config: Mapping[str, Any],
    running: Sequence[tuple[int, Mapping[str, Any]]],
    available: int | None,
    mapped: Mapping[str, Sequence[str]] | None = None,
) -> str | None:
    """Why a backup of the stopped VM with ``config`` would fail now, or None.

    ``running``: (vmid, config) of the other VMs running on its node;
    ``available``: the node's free memory in bytes (None: unknown); ``mapped``: each
    resource mapping's addresses on the node.
    """
    mine = pci_devices(config, mapped)
    if not mine:
        return None
    for vmid, other in running:
        shared = sorted(mine & pci_devices(other, mapped))
        if shared:
            return (
                f"not backed up: vzdump starts the stopped VM paused with its passed-through "
                f"devices, and running VM {vmid} holds {', '.join(shared)}; back it up while "
                f"{vmid} is stopped"
            )
    try:
        memory = int(str(config.get("memory", 512))) * MIB
    except ValueError:
        return None
    if available is not None and memory > available:
        return (
            f"not backed up: vzdump starts the stopped VM paused with its passed-through "
            f"devices, which pins all its {memory // MIB} MiB, and the node has "
            f"{available // MIB} MiB free"
        )
    return None
