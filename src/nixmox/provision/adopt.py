"""`nixmox adopt`: inventory entries for guests that already exist.

What it writes is what :mod:`nixmox.provision.desired` reads back, so a plan
right after adopting shows no changes. Settings the inventory has no word for
are left out (and so never touched), rather than guessed.
"""

from __future__ import annotations

from typing import Any

import tomlkit

from nixmox.adapters.proxmox import props
from nixmox.inventory.model import Startup
from nixmox.provision.diff import ActualGuest

_DISK_SLOTS = ("scsi", "virtio", "sata", "ide")
_NIC_MODELS = ("virtio", "e1000", "e1000e", "rtl8139", "vmxnet3")


def _bool(value: str) -> bool:
    return props.same_bool(value, "1") is True


def _int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def guest_entry(actual: ActualGuest, name: str) -> dict[str, Any]:
    """One ``[[guests]]`` table for ``actual``."""
    cfg = actual.config
    lxc = actual.type == "lxc"
    entry: dict[str, Any] = {
        "name": name,
        "vmid": actual.vmid,
        "kind": "lxc" if lxc else "vm",
        "node": actual.node,
    }
    ostype = cfg.get("ostype")
    if ostype == "nixos":
        entry["os"] = "nixos"
    elif ostype and ostype.startswith("win"):
        entry["os"] = "windows"
    if ostype:
        entry["ostype"] = ostype
    if cfg.get("description", "").strip():
        entry["description"] = cfg["description"].strip()
    if cfg.get("tags"):
        entry["tags"] = sorted(props.tags(cfg["tags"]))
    if "onboot" in cfg:
        entry["onboot"] = _bool(cfg["onboot"])
    startup = props.parse("startup", cfg.get("startup", ""))
    boot = {k: n for k in Startup.model_fields if (n := _int(startup.get(k, ""))) is not None}
    if boot:
        entry["startup"] = boot
    for key in ("cores", "memory") + (("swap",) if lxc else ("sockets", "balloon")):
        if key in cfg and _int(cfg[key]) is not None:
            entry[key] = _int(cfg[key])
    if lxc:
        if "unprivileged" in cfg:
            entry["unprivileged"] = _bool(cfg["unprivileged"])
        features = props.parse("features", cfg.get("features", ""))
        known = [f for f in ("nesting", "keyctl", "fuse", "mknod") if _bool(features.get(f, "0"))]
        if known:
            entry["features"] = known
        if "rootfs" in cfg:
            rootfs = props.parse("rootfs", cfg["rootfs"])
            entry["rootfs"] = {
                "storage": props.volume_storage(rootfs.get("volume", "")),
                "size": rootfs.get("size", "8G"),
            }
    else:
        for key in ("machine", "bios", "cpu", "affinity", "scsihw"):
            if cfg.get(key):
                entry[key] = cfg[key]
        if "agent" in cfg:
            entry["agent"] = _bool(props.parse("agent", cfg["agent"]).get("enabled", "0"))
        disks = []
        for key in sorted(cfg, key=props.slot_order):
            if props.kind_of(key) not in _DISK_SLOTS or not key[-1].isdigit():
                continue
            opts = props.parse(key, cfg[key])
            if opts.get("media") == "cdrom" or "size" not in opts:
                continue
            disk: dict[str, Any] = {
                "slot": key,
                "storage": props.volume_storage(opts["file"]),
                "size": opts["size"],
            }
            for flag in ("iothread", "ssd", "backup"):
                if flag in opts:
                    disk[flag] = _bool(opts[flag])
            if "discard" in opts:
                disk["discard"] = opts["discard"] == "on"
            if "cache" in opts:
                disk["cache"] = opts["cache"]
            disks.append(disk)
        if disks:
            entry["disks"] = disks
        if "efidisk0" in cfg:
            efi = props.parse("efidisk0", cfg["efidisk0"])
            entry["efidisk"] = {
                "storage": props.volume_storage(efi["file"]),
                "efitype": efi.get("efitype", "2m"),
                "pre-enrolled-keys": _bool(efi.get("pre-enrolled-keys", "0")),
            }
        if "tpmstate0" in cfg:
            tpm = props.parse("tpmstate0", cfg["tpmstate0"])
            entry["tpmstate"] = {
                "storage": props.volume_storage(tpm["file"]),
                "version": tpm.get("version", "v2.0"),
            }
        pcis = []
        for i in range(16):
            if f"hostpci{i}" not in cfg:
                break
            opts = props.parse(f"hostpci{i}", cfg[f"hostpci{i}"])
            pci: dict[str, Any] = {}
            if "host" in opts:
                pci["device"] = (
                    opts["host"] if opts["host"].count(":") == 2 else f"0000:{opts['host']}"
                )
            if "mapping" in opts:
                pci["mapping"] = opts["mapping"]
            for flag in ("pcie", "x-vga", "rombar"):
                if flag in opts:
                    pci[flag] = _bool(opts[flag])
            pcis.append(pci)
        if pcis:
            entry["hostpci"] = pcis
    nets = []
    for i in range(32):
        raw = cfg.get(f"net{i}")
        if raw is None:
            break
        opts = props.parse(f"net{i}", raw)
        net: dict[str, Any] = {"bridge": opts.get("bridge", "")}
        if not lxc and opts.get("model") in _NIC_MODELS:
            net["model"] = opts["model"]
        if lxc:
            for key in ("ip", "gw", "ip6"):
                if key in opts:
                    net[key] = opts[key]
        if "tag" in opts and _int(opts["tag"]):
            net["tag"] = _int(opts["tag"])
        if "firewall" in opts:
            net["firewall"] = _bool(opts["firewall"])
        nets.append(net)
    if nets:
        entry["net"] = nets
    return entry


def render(entries: list[dict[str, Any]]) -> str:
    """The ``[[guests]]`` tables as TOML text a person can paste into the inventory."""
    doc = tomlkit.document()
    doc.add(tomlkit.comment("Written by `nixmox adopt`; `nixmox plan` should show no changes."))
    guests = tomlkit.aot()
    for entry in entries:
        table = tomlkit.table()
        for key, value in entry.items():
            if isinstance(value, list) and value and isinstance(value[0], dict):
                array = tomlkit.aot()
                for item in value:
                    array.append(tomlkit.item(item))
                table.add(key, array)
            elif isinstance(value, dict):
                inline = tomlkit.inline_table()
                inline.update(value)
                table.add(key, inline)
            else:
                table.add(key, value)
        guests.append(table)
    doc.add("guests", guests)
    return tomlkit.dumps(doc)
