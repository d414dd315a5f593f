"""Reading the actual state: one ``/cluster/resources``, then ``pending`` (one
request: every key's current and pending value) of the declared guests only,
fetched concurrently with a bound per node; bridges and storages only where the
inventory declares them. Plan never talks to a guest agent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from nixmox.adapters.proxmox.client import ApiError, Proxmox
from nixmox.adapters.proxmox.cluster import GuestRow, read_cluster
from nixmox.adapters.proxmox.fanout import PER_NODE, TOTAL, NodeLimits, run_all
from nixmox.adapters.proxmox.permissions import granted, holds
from nixmox.core.errors import NixmoxError
from nixmox.inventory.model import Inventory
from nixmox.provision.desired import desired_bridges
from nixmox.provision.diff import ActualGuest, ActualState

log = logging.getLogger(__name__)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def read_guest(
    api: Proxmox, row: GuestRow | Mapping[str, Any], *, digest: bool = False
) -> ActualGuest:
    """One guest from its ``pending`` list alone (one request).

    ``pending`` lists every key with its current ``value`` and, where one waits,
    its ``pending`` value or ``delete`` flag. ``digest=True`` also reads
    ``config`` for the digest a write must carry (apply, just before it writes).
    ``row`` may be a raw ``/cluster/resources`` entry.
    """
    if not isinstance(row, GuestRow):
        row = GuestRow.from_api(row)
    config: dict[str, Any] = {}
    pending: dict[str, str | None] = {}
    for entry in api.get(f"{row.path}/pending") or []:
        key = str(entry["key"])
        if "value" in entry:
            config[key] = entry["value"]
        if entry.get("delete"):
            pending[key] = None
        elif "pending" in entry:
            pending[key] = _text(entry["pending"])
    # Real PVE lists the digest as a key too; it is no setting.
    config.pop("digest", None)
    pending.pop("digest", None)
    written = (api.get(f"{row.path}/config") or {}).get("digest") if digest else None
    return ActualGuest(
        vmid=row.vmid,
        type=row.type,
        node=row.node,
        status=row.status,
        lock=row.lock or config.get("lock"),
        template=row.template,
        config={k: _text(v) for k, v in config.items()},
        pending=pending,
        digest=written,
    )


def read_state(
    api: Proxmox, inv: Inventory, *, per_node: int = PER_NODE, total: int = TOTAL
) -> ActualState:
    """Everything plan needs, in as few requests as the API allows.

    ``/cluster/resources`` and ``/storage`` leave out what the token may not
    audit: a declared guest or storage they do not list is judged against
    ``/access/permissions`` (one request) before plan calls it new.
    """
    cluster = read_cluster(api)
    by_vmid = cluster.guests
    declared = [by_vmid[g.vmid] for g in inv.guests if g.vmid in by_vmid]
    limits = NodeLimits(per_node)
    guests: dict[int, ActualGuest] = {}
    errors: dict[int, str] = {}
    held = granted(api)
    for g in inv.guests:
        if g.vmid in by_vmid:
            continue
        if not holds(held, f"/vms/{g.vmid}", "VM.Audit"):
            errors[g.vmid] = (
                f"this token cannot see guest {g.vmid} (it needs VM.Audit on /vms/{g.vmid}); "
                "not planned"
            )
        elif isinstance(g.clone, int) and not holds(held, f"/vms/{g.clone}", "VM.Audit"):
            errors[g.vmid] = (
                f"this token cannot see clone source {g.clone} (it needs VM.Audit on "
                f"/vms/{g.clone}); not planned"
            )

    def fetch(row: GuestRow) -> None:
        if row.status == "unknown":
            errors[row.vmid] = f"node {row.node} is not answering (offline?); guest not read"
            return
        with limits(row.node):
            try:
                guests[row.vmid] = read_guest(api, row)
            except NixmoxError as exc:
                errors[row.vmid] = f"cannot read guest {row.vmid} on {row.node}: {exc}"

    run_all(fetch, declared, total)
    bridges: dict[tuple[str, str], dict[str, Any]] = {}
    managed = {b.node for b in desired_bridges(inv) if b.node}
    # Nodes whose guests name a bridge: plan checks that the bridge is there.
    used = {g.node for g in inv.guests if g.net} - managed
    read_networks: set[str] = set()

    def fetch_network(node: str) -> None:
        if cluster.nodes.get(node, "online") != "online":
            return  # plan reports the node itself; its network cannot be read
        try:
            for iface in api.get(f"/nodes/{node}/network") or []:
                bridges[(node, str(iface["iface"]))] = iface
            read_networks.add(node)
        except NixmoxError as exc:
            if node in managed:
                if isinstance(exc, ApiError) and exc.status == 403:
                    raise NixmoxError(
                        f"this token cannot see the network of node {node} "
                        f"(it needs Sys.Audit on /nodes/{node})"
                    ) from None
                raise NixmoxError(f"cannot read the network of node {node}: {exc}") from None
            log.info("cannot read the network of %s: %s", node, exc)

    run_all(fetch_network, sorted(managed | used), total)
    storages = {str(s["storage"]): s for s in api.get("/storage") or []}
    storage_errors: dict[str, str] = {}
    for s in inv.storages:
        if s.storage not in storages and not holds(
            held, f"/storage/{s.storage}", "Datastore.Audit|Datastore.AllocateSpace"
        ):
            storage_errors[s.storage] = (
                f"this token cannot see storage {s.storage} (it needs Datastore.Audit on "
                f"/storage/{s.storage}); not planned"
            )
    # Any storage plan may name that the token cannot audit: a storage holding only
    # Datastore.AllocateSpace is listed by /storage but not by /cluster/resources.
    hidden = frozenset(
        s
        for s in set(storages) | _named_storages(inv)
        if not holds(held, f"/storage/{s}", "Datastore.Audit")
    )
    sources = _clone_sources(api, inv, by_vmid)
    jobs: dict[str, dict[str, Any]] = {}
    if inv.backups is not None and inv.backups.scheduler == "proxmox":
        jobs = {str(j["id"]): j for j in api.get("/cluster/backup") or []}
    return ActualState(
        guests,
        list(by_vmid.values()),
        bridges,
        storages,
        errors,
        jobs,
        _container_templates(api, inv, set(by_vmid), total),
        nodes=cluster.nodes,
        node_storages=cluster.storages,
        networks_read=frozenset(read_networks),
        # The templates' configs as plan's clone checks take them.
        clone_configs={vmid: dict(src.config) for vmid, src in sources.values()},
        storage_errors=storage_errors,
        clone_sources=sources,
        hidden_storages=hidden,
        granted=held,
    )


def _named_storages(inv: Inventory) -> set[str]:
    """Every storage id the inventory's guests and backups name."""
    named: set[str] = set()
    for g in inv.guests:
        named |= {d.storage for d in g.disks}
        for volume in (g.rootfs, g.efidisk, g.tpmstate):
            if volume is not None:
                named.add(volume.storage)
        if g.template is not None:
            named.add(g.template.split(":", 1)[0])
    if inv.backups is not None:
        named.add(inv.backups.storage)
        if inv.backups.verify is not None and inv.backups.verify.storage is not None:
            named.add(inv.backups.verify.storage)
    return named


def _clone_sources(
    api: Proxmox, inv: Inventory, rows: Mapping[int, GuestRow]
) -> dict[str, tuple[int, ActualGuest]]:
    """The template VMs guests still to create are cloned from, as the inventory names
    them, with their vmid and config: plan checks their boot slot and storages, and what
    the clone brings decides what apply converges (and which privileges that takes).
    A template that cannot be read is left out."""
    found: dict[str, tuple[int, ActualGuest]] = {}
    wanted = {str(g.clone) for g in inv.guests if g.clone is not None and g.vmid not in rows}
    for source in sorted(wanted):
        match = [r for r in rows.values() if r.template and source in (str(r.vmid), r.name)]
        if not match:
            continue
        try:
            found[source] = (match[0].vmid, read_guest(api, match[0]))
        except NixmoxError as exc:
            log.info("cannot read template %s: %s", source, exc)
    return found


def _container_templates(
    api: Proxmox, inv: Inventory, existing: set[int], total: int
) -> dict[tuple[str, str], frozenset[str]]:
    """The vztmpl volumes of each (node, storage) a container still to create names.

    A storage that cannot be listed is left out: plan then does not judge it.
    """
    wanted = sorted(
        {
            (g.node, g.template.split(":", 1)[0])
            for g in inv.guests
            if g.kind == "lxc" and g.template and g.vmid not in existing
        }
    )
    found: dict[tuple[str, str], frozenset[str]] = {}

    def fetch(where: tuple[str, str]) -> None:
        node, storage = where
        try:
            rows = api.get(f"/nodes/{node}/storage/{storage}/content", content="vztmpl") or []
        except NixmoxError as exc:
            log.info("cannot list templates on %s of %s: %s", storage, node, exc)
            return
        found[where] = frozenset(str(r.get("volid")) for r in rows)

    run_all(fetch, wanted, total)
    return found
