"""Proxmox property strings, parsed and compared the way Proxmox means them.

``scsi0: vm-disks:vm-101-disk-0,iothread=1,discard=on,size=32G`` is a value
with a default key (the volume) and options. Comparing such strings as text
reports drift that is not there (key order, ``on`` vs ``1``, ``32768M`` vs
``32G``, a MAC address Proxmox generated), so nixmox compares them parsed,
key by key, and only the keys the inventory declares.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

PropertyString = dict[str, str]

#: The option that takes no ``key=`` for a given config key (PVE's default_key).
_DEFAULT_KEY = {
    "net": "model",  # "virtio=AA:BB:..,bridge=vmbr0": the model is the key, its value the MAC
    "hostpci": "host",
    "rootfs": "volume",
    "mp": "volume",
    "scsi": "file",
    "virtio": "file",
    "sata": "file",
    "ide": "file",
    "efidisk": "file",
    "tpmstate": "file",
    "agent": "enabled",
    "vga": "type",
    "features": "",
    "startup": "order",  # "startup: 2" is order 2
}

#: Kinds whose default key nixmox still writes with its name (``order=2``, as the GUI does).
_NAMED_ON_WRITE = {"startup"}


def slot_order(key: str) -> tuple[str, int]:
    """Sort key for config keys: ``scsi2`` before ``scsi10``, plain keys first in their kind."""
    kind = kind_of(key)
    number = key[len(kind) :]
    return kind, int(number) if number.isdigit() else -1


def default_key(key: str) -> str | None:
    """The option written without ``name=`` for config key ``key`` (``scsi0`` -> ``file``)."""
    return _DEFAULT_KEY.get(kind_of(key)) or None


_NIC_MODELS = {"virtio", "e1000", "e1000e", "rtl8139", "vmxnet3", "veth"}
_SLOT = re.compile(r"([a-z]+?)(\d*)$")


def kind_of(key: str) -> str:
    """``scsi0`` -> ``scsi``; ``net1`` -> ``net``; ``memory`` -> ``memory``."""
    found = _SLOT.match(key)
    return found.group(1) if found else key


def parse(key: str, value: str) -> PropertyString:
    """Parse the value of config key ``key`` into a dict of options."""
    kind = kind_of(key)
    result: PropertyString = {}
    for i, part in enumerate(p for p in value.split(",") if p != ""):
        name, eq, val = part.partition("=")
        if not eq:
            default = _DEFAULT_KEY.get(kind)
            if default and i == 0:
                result[default] = name
            else:
                result[name] = "1"  # a bare flag
            continue
        if kind == "net" and name in _NIC_MODELS and i == 0:
            # QEMU NICs: "virtio=MAC"; LXC NICs use name=, hwaddr=, type=.
            result["model"] = name
            result["macaddr"] = val
            continue
        result[name] = val
    return result


def render(key: str, options: Mapping[str, str]) -> str:
    """The inverse of :func:`parse` for values nixmox writes."""
    kind = kind_of(key)
    default = _DEFAULT_KEY.get(kind)
    parts: list[str] = []
    rest = dict(options)
    if kind == "net" and "model" in rest:
        model = rest.pop("model")
        mac = rest.pop("macaddr", "")
        parts.append(f"{model}={mac}" if mac else model)
    elif default and default in rest and kind not in _NAMED_ON_WRITE:
        parts.append(rest.pop(default))
    parts += [f"{k}={v}" for k, v in rest.items()]
    return ",".join(parts)


_TRUE = {"1", "on", "yes", "true"}
_FALSE = {"0", "off", "no", "false"}


def same_bool(a: str, b: str) -> bool | None:
    """Whether two boolean-ish values agree; ``None`` if either is not boolean."""
    la, lb = a.lower(), b.lower()
    if (la in _TRUE or la in _FALSE) and (lb in _TRUE or lb in _FALSE):
        return (la in _TRUE) == (lb in _TRUE)
    return None


_SIZE = re.compile(r"(\d+(?:\.\d+)?)([KMGT]?)B?$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def size_bytes(text: str, default_unit: str = "") -> int | None:
    """``32G`` -> bytes; ``None`` if it is not a size."""
    found = _SIZE.match(text.strip())
    if found is None:
        return None
    unit = (found.group(2) or default_unit).upper()
    return int(float(found.group(1)) * _UNITS[unit])


def cpu_set(text: str) -> frozenset[int] | None:
    """``8-15,24-31`` -> the CPUs it names; ``None`` if it is not a CPU list."""
    cpus: set[int] = set()
    for part in text.split(","):
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            return None
        cpus.update(range(int(low), int(high or low) + 1))
    return frozenset(cpus)


def machine_matches(desired: str, actual: str) -> bool:
    """``q35`` accepts the version Proxmox pins at create (``pc-q35-9.2+pve1``)."""
    if desired == actual:
        return True
    if desired == "q35":
        return actual.startswith("pc-q35-")
    if desired in ("pc", "i440fx"):
        return actual.startswith("pc-i440fx-") or actual == "pc"
    return False


def volume_storage(volume: str) -> str:
    """``vm-disks:vm-101-disk-0`` -> ``vm-disks``."""
    return volume.split(":", 1)[0]


def tags(text: str) -> frozenset[str]:
    """PVE tags (``a;b``, also ``,`` or spaces), order-free."""
    return frozenset(t for t in re.split(r"[;, ]+", text.strip()) if t)
