"""Typed facts about the cluster, read once: ``/cluster/resources`` and guest status.

Every feature that needs to know which guests exist, where they run and in
which state reads them here, as :class:`GuestRow` values, instead of picking
keys out of the API's dicts. One answer of ``/cluster/resources`` serves a
whole pass (wrap the client in :class:`~nixmox.adapters.proxmox.client.ReadOnce`
when several readers share one pass).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.core.errors import NixmoxError

PveType = Literal["qemu", "lxc"]
GuestKind = Literal["vm", "lxc"]


def pve_type(kind: str) -> PveType:
    """The API's guest type (``qemu``/``lxc``) for the inventory's kind (``vm``/``lxc``)."""
    return "lxc" if kind == "lxc" else "qemu"


def guest_path(node: str, type_: str, vmid: int) -> str:
    """``/nodes/{node}/{qemu|lxc}/{vmid}``: the API path of one guest."""
    return f"/nodes/{node}/{type_}/{vmid}"


@dataclass(frozen=True)
class GuestRow:
    """One guest as ``/cluster/resources`` lists it."""

    vmid: int
    type: PveType
    node: str
    name: str = ""
    status: str = "unknown"
    lock: str | None = None
    template: bool = False
    hastate: str | None = None
    maxmem: int = 0
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def kind(self) -> GuestKind:
        """The inventory's word for the type: ``vm`` or ``lxc``."""
        return "lxc" if self.type == "lxc" else "vm"

    @property
    def path(self) -> str:
        """The guest's API path."""
        return guest_path(self.node, self.type, self.vmid)

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> GuestRow:
        """A row of ``/cluster/resources?type=vm``; :class:`NixmoxError` when it is malformed."""
        try:
            type_ = str(row["type"])
            if type_ not in ("qemu", "lxc"):
                raise ValueError(f"type {type_!r}")
            lock = row.get("lock")
            hastate = row.get("hastate")
            return cls(
                vmid=int(row["vmid"]),
                type="lxc" if type_ == "lxc" else "qemu",
                node=str(row["node"]),
                name=str(row.get("name") or ""),
                status=str(row.get("status") or "unknown"),
                lock=str(lock) if lock else None,
                template=bool(int(row.get("template") or 0)),
                hastate=str(hastate) if hastate else None,
                maxmem=int(row.get("maxmem") or 0),
                raw=dict(row),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise NixmoxError(f"/cluster/resources: malformed guest row ({exc})") from None


def read_guests(api: Proxmox) -> dict[int, GuestRow]:
    """Every guest of the cluster by VMID, from one ``/cluster/resources`` request."""
    rows = api.get("/cluster/resources", type="vm") or []
    if not isinstance(rows, list):
        raise NixmoxError("/cluster/resources: expected a list")
    guests: dict[int, GuestRow] = {}
    for row in rows:
        if isinstance(row, Mapping) and row.get("type") in ("qemu", "lxc") and "vmid" in row:
            guest = GuestRow.from_api(row)
            guests[guest.vmid] = guest
    return guests


@dataclass(frozen=True)
class Cluster:
    """One untyped ``/cluster/resources``: guests, node states and where each storage is.

    ``storages`` has a row per (node, storage id) for every storage enabled on
    that node, with the content types it holds: Proxmox lists a storage under
    a node only where it is enabled.
    """

    guests: dict[int, GuestRow]
    nodes: dict[str, str]  # node -> "online" | "offline" | "unknown"
    storages: dict[tuple[str, str], frozenset[str]]


def read_cluster(api: Proxmox) -> Cluster:
    """Guests, nodes and storages of the cluster in one request."""
    rows = api.get("/cluster/resources") or []
    if not isinstance(rows, list):
        raise NixmoxError("/cluster/resources: expected a list")
    guests: dict[int, GuestRow] = {}
    nodes: dict[str, str] = {}
    storages: dict[tuple[str, str], frozenset[str]] = {}
    for row in rows:
        if not isinstance(row, Mapping):
            continue
        kind = row.get("type")
        if kind in ("qemu", "lxc") and "vmid" in row:
            guest = GuestRow.from_api(row)
            guests[guest.vmid] = guest
        elif kind == "node" and row.get("node"):
            nodes[str(row["node"])] = str(row.get("status") or "unknown")
        elif kind == "storage" and row.get("node") and row.get("storage"):
            content = frozenset(c for c in str(row.get("content") or "").split(",") if c)
            storages[(str(row["node"]), str(row["storage"]))] = content
    return Cluster(guests, nodes, storages)


def guest_status(api: Proxmox, node: str, type_: str, vmid: int) -> dict[str, Any]:
    """``status/current`` of one guest (state, lock, uptime, agent flag, ...)."""
    answer = api.get(f"{guest_path(node, type_, vmid)}/status/current") or {}
    if not isinstance(answer, dict):
        raise NixmoxError(f"{guest_path(node, type_, vmid)}/status/current: expected an object")
    return answer


def current_row(api: Proxmox, node: str, type_: PveType, vmid: int) -> GuestRow:
    """One guest where it is known to be, from its ``status/current`` (one request,
    not the whole cluster's list): its state and lock."""
    status = guest_status(api, node, type_, vmid)
    lock = status.get("lock")
    return GuestRow(
        vmid,
        type_,
        node,
        name=str(status.get("name") or ""),
        status=str(status.get("status") or "unknown"),
        lock=str(lock) if lock else None,
        raw=status,
    )


def mismatch(row: GuestRow | None, vmid: int, kind: str, node: str) -> str | None:
    """Why the declared guest (``vmid``, ``kind``, ``node``) is not the one found, or ``None``.

    The one existence check: missing, another type, or on another node."""
    if row is None:
        return f"no guest {vmid} on the cluster"
    want = pve_type(kind)
    if row.type != want or row.node != node:
        return f"vmid {vmid} is a {row.type} on {row.node}, the inventory says {want} on {node}"
    return None
