"""Reading the live facts the diagrams draw: bridges, guests and their NICs and disks, storages.

One pass over the API: ``/cluster/resources``, each node's bridges, ``/storage``
and each guest's config (for its bridges and volumes). Turned into the plain
data of :mod:`nixmox.observe.diagrams`, which never talks to Proxmox itself.
"""

from __future__ import annotations

import re
from typing import Any

from nixmox.adapters.proxmox import props
from nixmox.adapters.proxmox.client import Proxmox, Retry, Timeouts
from nixmox.adapters.proxmox.cluster import GuestRow, read_guests
from nixmox.adapters.proxmox.fanout import per_node
from nixmox.adapters.proxmox.settings import connection
from nixmox.core.errors import ConfigError, NixmoxError
from nixmox.inventory.model import Inventory
from nixmox.observe.diagrams import Live, LiveBridge, LiveGuest, LiveStorage

# Disks and volumes in a guest config: scsi0, virtio1, sata2, ide3, efidisk0, tpmstate0,
# rootfs, mp0.
_VOLUME_KEY = re.compile(r"(scsi|virtio|sata|ide|mp)\d+|efidisk0|tpmstate0|rootfs")
_NET_KEY = re.compile(r"net\d+")

# A diagram is not worth waiting for: an unreachable API gives up quickly and
# the diagram is drawn from the inventory instead.
_TIMEOUTS = Timeouts(read=10.0, write=10.0, poll=5.0, login=10.0)
_RETRY = Retry(attempts=2, first_delay=0.2, max_delay=1.0)


def guest_facts(row: GuestRow, config: dict[str, Any]) -> LiveGuest:
    """A :class:`LiveGuest` from its ``/cluster/resources`` row and its config."""
    bridges: list[str] = []
    volumes: list[tuple[str, str, str]] = []
    for key in sorted(config, key=props.slot_order):
        value = config[key]
        if not isinstance(value, str):
            continue
        if _NET_KEY.fullmatch(key):
            bridge = props.parse(key, value).get("bridge")
            if bridge:
                bridges.append(bridge)
        elif _VOLUME_KEY.fullmatch(key):
            options = props.parse(key, value)
            volume = options.get("file") or options.get("volume") or ""
            # CD-ROMs and empty drives are not disks on a storage.
            if options.get("media") == "cdrom" or ":" not in volume:
                continue
            volumes.append((key, props.volume_storage(volume), options.get("size", "")))
    return LiveGuest(
        vmid=row.vmid,
        kind=row.kind,
        name=row.name or str(row.vmid),
        node=row.node,
        status=row.status,
        bridges=tuple(bridges),
        volumes=tuple(volumes),
    )


def storage_facts(entry: dict[str, Any]) -> LiveStorage:
    """A :class:`LiveStorage` from one ``/storage`` entry (a zfspool's dataset is its ``pool``)."""
    content = tuple(c for c in str(entry.get("content", "")).split(",") if c)
    return LiveStorage(
        storage=str(entry["storage"]),
        type=str(entry.get("type", "")),
        dataset=entry.get("pool") if entry.get("type") == "zfspool" else None,
        path=entry.get("path"),
        content=content,
    )


def read_live(api: Proxmox, inv: Inventory) -> Live:
    """The live facts of every node the inventory names (or the API lists)."""
    rows = [r for r in read_guests(api).values() if not r.template]
    nodes = [n.name for n in inv.nodes] or sorted({r.node for r in rows})
    networks: dict[str, list[dict[str, Any]]] = {}

    def read_network(node: str) -> None:
        networks[node] = api.get(f"/nodes/{node}/network", type="any_bridge")

    per_node(read_network, nodes, lambda node: node)
    bridges = [
        LiveBridge(node=node, name=iface["iface"], cidr=iface.get("cidr"))
        for node in nodes
        for iface in networks[node]
    ]
    configs: dict[int, dict[str, Any]] = {}

    def read_config(r: GuestRow) -> None:
        configs[r.vmid] = api.get(f"{r.path}/config")

    # The same bounds as plan's reads: a big cluster is not read one by one, a node not flooded.
    per_node(read_config, rows, lambda r: r.node)
    guests = [guest_facts(r, configs[r.vmid]) for r in sorted(rows, key=lambda r: r.vmid)]
    storages = [storage_facts(s) for s in api.get("/storage")]
    return Live(
        source=api.conn.url, guests=tuple(guests), bridges=tuple(bridges), storages=tuple(storages)
    )


def try_live(inv: Inventory) -> tuple[Live | None, str | None]:
    """The live facts, or None and why not (no API configured, unreachable, refused)."""
    try:
        api = Proxmox(connection(inv.proxmox), timeouts=_TIMEOUTS, retry=_RETRY)
    except ConfigError as exc:
        return None, f"Proxmox API not configured ({exc})"
    try:
        return read_live(api, inv), None
    except NixmoxError as exc:
        return None, f"Proxmox API not usable ({exc})"
