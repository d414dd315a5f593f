"""Reading the actual state: one ``/cluster/resources``, then ``config`` and
``pending`` of the declared guests only, fetched concurrently with a bound per
node; bridges and storages only where the inventory declares them. Plan never
talks to a guest agent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.cluster import GuestRow, read_guests
from nixmox.core.errors import NixmoxError
from nixmox.inventory.model import Inventory
from nixmox.provision.desired import desired_bridges
from nixmox.provision.diff import ActualGuest, ActualState

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Requests in flight per node (its pveproxy serves a few workers) and in all.
#: Measured (bench/plan.py, 1,000 guests, 20 ms): 12 in flight is the fastest;
#: beyond it the client's own CPU, not the network, sets the pace.
PER_NODE = 4
TOTAL = 12


class NodeLimits:
    """A semaphore per node, so one busy node never takes every worker."""

    def __init__(self, per_node: int) -> None:
        self.per_node = per_node
        self._locks: dict[str, threading.Semaphore] = {}
        self._guard = threading.Lock()

    def __call__(self, node: str) -> threading.Semaphore:
        with self._guard:
            return self._locks.setdefault(node, threading.BoundedSemaphore(self.per_node))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def read_guest(api: Proxmox, row: GuestRow | Mapping[str, Any]) -> ActualGuest:
    """``config`` and ``pending`` of one guest (two requests).

    ``row`` may still be a raw ``/cluster/resources`` entry (cli/plan_cmd's adopt)."""
    if not isinstance(row, GuestRow):
        row = GuestRow.from_api(row)
    config = api.get(f"{row.path}/config") or {}
    pending_rows = api.get(f"{row.path}/pending") or []
    pending: dict[str, str | None] = {}
    for entry in pending_rows:
        if entry.get("delete"):
            pending[entry["key"]] = None
        elif "pending" in entry:
            pending[entry["key"]] = _text(entry["pending"])
    digest = config.pop("digest", None)
    return ActualGuest(
        vmid=row.vmid,
        type=row.type,
        node=row.node,
        status=row.status,
        lock=row.lock or config.get("lock"),
        template=row.template,
        config={k: _text(v) for k, v in config.items()},
        pending=pending,
        digest=digest,
    )


def read_state(
    api: Proxmox, inv: Inventory, *, per_node: int = PER_NODE, total: int = TOTAL
) -> ActualState:
    """Everything plan needs, in as few requests as the API allows."""
    by_vmid = read_guests(api)
    declared = [by_vmid[g.vmid] for g in inv.guests if g.vmid in by_vmid]
    limits = NodeLimits(per_node)
    guests: dict[int, ActualGuest] = {}
    errors: dict[int, str] = {}

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
    nodes = sorted({b.node for b in desired_bridges(inv) if b.node})

    def fetch_network(node: str) -> None:
        try:
            for iface in api.get(f"/nodes/{node}/network") or []:
                bridges[(node, str(iface["iface"]))] = iface
        except NixmoxError as exc:
            raise NixmoxError(f"cannot read the network of node {node}: {exc}") from None

    run_all(fetch_network, nodes, total)
    storages: dict[str, dict[str, Any]] = {}
    if inv.storages:
        storages = {str(s["storage"]): s for s in api.get("/storage") or []}
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
    )


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


def run_all(fn: Callable[[T], None], items: list[T], workers: int) -> None:
    """Run ``fn`` over ``items`` on a bounded pool; the first exception propagates."""
    if not items:
        return
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items)))) as pool:
        for future in [pool.submit(fn, item) for item in items]:
            future.result()
