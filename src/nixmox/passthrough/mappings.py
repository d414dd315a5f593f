"""PCI resource mappings (``/cluster/mapping/pci``): where a ``mapping = "ID"`` points. Pure.

A token may pass a device to a VM only through a mapping (qemu-server
``check_hostpci_perm``: a raw address is root@pam's, a mapping needs
``Mapping.Use`` on ``/mapping/pci/ID``). Creating the mapping needs root@pam
or ``Mapping.Modify`` (pve-manager ``PVE/API2/Cluster/Mapping/PCI.pm``),
which nixmox never asks for: it resolves the mapping to the addresses the
other passthrough checks judge, and when it is missing prints the one
command that creates it from ``/nodes/{node}/hardware/pci``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nixmox.core.verdict import Check, Status

CHECK = "resource-mapping"
#: Who may create a mapping; nixmox's own grants never include it.
WHO_CREATES = "needs root@pam or Mapping.Modify on /mapping/pci, which nixmox never asks for"


def map_entries(listing: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, str]]]:
    """``/cluster/mapping/pci`` as mapping id -> its entries (``node=...,path=...`` parsed)."""
    out: dict[str, list[dict[str, str]]] = {}
    for row in listing:
        raw = row.get("map") or []
        entries = raw if isinstance(raw, list) else [raw]
        parsed = []
        for entry in entries:
            opts: dict[str, str] = {}
            for part in str(entry).split(","):
                key, eq, value = part.partition("=")
                if eq:
                    opts[key.strip()] = value.strip()
            parsed.append(opts)
        out[str(row.get("id", ""))] = parsed
    return out


def node_paths(entries: Sequence[Mapping[str, str]], node: str) -> list[str] | None:
    """The addresses a mapping names on ``node`` (``path`` may list several with ``;``),
    ``None`` without an entry for the node."""
    for entry in entries:
        if entry.get("node") == node:
            return [
                p.strip().lower() if p.strip().count(":") == 2 else "0000:" + p.strip().lower()
                for p in entry.get("path", "").split(";")
                if p.strip()
            ]
    return None


def map_entry(node: str, address: str, listing: Sequence[Mapping[str, Any]] | None) -> str | None:
    """The ``--map`` value for ``address`` on ``node``, with the vendor, device and IOMMU
    group PVE lists for it (its first function); ``None`` when ``/hardware/pci`` does not."""
    first = address if "." in address else address + ".0"
    by_id = {str(d.get("id", "")).lower(): d for d in listing or []}
    device = by_id.get(first.lower())
    if device is None:
        return None
    ids = ":".join(str(device.get(k, "")).lower().removeprefix("0x") for k in ("vendor", "device"))
    group = device.get("iommugroup", -1)
    entry = f"node={node},path={address},id={ids}"
    if group not in (-1, None):
        entry += f",iommugroup={group}"
    return entry


def create_command(
    mid: str, entry: str, existing: Sequence[Mapping[str, str]] | None = None
) -> str:
    """The pvesh line that creates mapping ``mid`` with ``entry``, or (``existing``: its
    current entries, which ``--map`` replaces as a whole) adds ``entry`` to it."""
    if existing is None:
        return f"pvesh create /cluster/mapping/pci --id {mid} --map {entry}"
    kept = [",".join(f"{k}={v}" for k, v in e.items()) for e in existing]
    maps = " ".join(f"--map {m}" for m in [*kept, entry])
    return f"pvesh set /cluster/mapping/pci/{mid} {maps}"


def check_mapping(
    subject: str,
    mid: str,
    node: str,
    declared: str | None,
    mappings: Mapping[str, Sequence[Mapping[str, str]]] | None,
    visible: bool,
    listing: Sequence[Mapping[str, Any]] | None,
    error: str = "",
) -> tuple[Check, list[str]]:
    """The verdict on one ``mapping = "ID"`` of a guest on ``node`` and the addresses it
    resolves to there (empty when it does not).

    ``declared``: the inventory's ``device`` next to the mapping (where it should point);
    ``visible``: whether the token may see the mapping at all (``Mapping.Audit``, ``.Use``
    or ``.Modify``); ``listing``: the node's ``/hardware/pci``, for the command.
    """
    if mappings is None:
        return Check(
            CHECK, Status.UNKNOWN, subject, f"cannot read /cluster/mapping/pci: {error}"
        ), []
    if not visible:
        return Check(
            CHECK,
            Status.FAIL,
            subject,
            f"this token cannot see resource mapping {mid!r}",
            f"grant Mapping.Use on /mapping/pci/{mid} (`nixmox token` prints it)",
        ), []
    entries = mappings.get(mid)
    paths = None if entries is None else node_paths(entries, node)
    if paths:
        if declared is not None and declared.lower() not in paths:
            return Check(
                CHECK,
                Status.FAIL,
                subject,
                f"mapping {mid!r} names {';'.join(paths)} on {node}, the inventory says {declared}",
                f"correct guests.hostpci's device, or the mapping (Datacenter > Resource "
                f"Mappings; {WHO_CREATES})",
            ), paths
        return Check(
            CHECK, Status.PASS, subject, f"mapping {mid!r} -> {';'.join(paths)} on {node}"
        ), paths
    what = (
        f"resource mapping {mid!r} does not exist"
        if entries is None
        else f"resource mapping {mid!r} has no entry for node {node}"
    )
    entry = None if declared is None else map_entry(node, declared, listing)
    if entry is not None:
        how = f"as root on the node: `{create_command(mid, entry, entries)}`"
    elif declared is None:
        how = (
            'add device = "ADDRESS" next to the mapping in guests.hostpci and doctor prints '
            "the command; or create it under Datacenter > Resource Mappings"
        )
    else:
        how = f"create it for {declared} under Datacenter > Resource Mappings"
    return Check(
        CHECK, Status.FAIL, subject, f"{what}: the VM cannot start", f"{how} ({WHO_CREATES})"
    ), []
