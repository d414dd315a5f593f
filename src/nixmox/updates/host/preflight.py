"""Before nixmox touches a node: is the cluster in a state to update it? Pure.

Read from three API answers taken just before the node's turn:
``/cluster/status`` (quorum, the node online), ``/cluster/tasks`` (a running
vzdump on the node, a migration anywhere) and ``/cluster/resources`` (guests
on the node locked by a backup or a migration).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from nixmox.adapters.proxmox.cluster import GuestRow
from nixmox.core.words import plural

# Task types of a migration in progress: VM, container, HA-driven.
MIGRATIONS = frozenset({"qmigrate", "vzmigrate", "hamigrate"})
BUSY_LOCKS = frozenset({"backup", "migrate"})

Row = Mapping[str, Any]


def running(task: Row) -> bool:
    """A task row of a task list that has not ended (PVE gives it no end time or status)."""
    return not task.get("endtime") and task.get("status") in (None, "", "running")


def cluster_nodes(status: Sequence[Row]) -> dict[str, bool]:
    """Node name -> online, from ``/cluster/status``."""
    return {
        str(r["name"]): bool(r.get("online", 1))
        for r in status
        if r.get("type") == "node" and r.get("name")
    }


def quorate(status: Sequence[Row]) -> bool:
    """Whether the cluster has quorum (a node outside any cluster always has)."""
    for row in status:
        if row.get("type") == "cluster":
            return bool(row.get("quorate"))
    return True


def problems(
    node: str, status: Sequence[Row], tasks: Sequence[Row], guests: Iterable[GuestRow]
) -> list[str]:
    """Everything that stops nixmox from updating ``node`` now; empty when it may."""
    found: list[str] = []
    nodes = cluster_nodes(status)
    if node not in nodes:
        known = ", ".join(sorted(nodes)) or "none"
        found.append(f"the API does not know node {node} (its nodes: {known})")
    elif not nodes[node]:
        found.append(f"node {node} is offline")
    if not quorate(status):
        online = sum(nodes.values())
        found.append(f"the cluster has no quorum ({online} of {plural(len(nodes), 'node')} online)")
    found.extend(busy(node, tasks))
    for guest in guests:
        if guest.node == node and guest.lock in BUSY_LOCKS:
            found.append(f"guest {guest.vmid} on {node} is locked ({guest.lock})")
    return found


def busy(node: str, tasks: Sequence[Row]) -> list[str]:
    """Running tasks a reboot of ``node`` would break: a backup on it, a migration anywhere.

    Checked at the preflight and again right before the reboot request: a PVE
    backup job may start in between, and the reboot would kill it.
    """
    found: list[str] = []
    for task in tasks:
        if not running(task):
            continue
        kind = str(task.get("type", ""))
        where = str(task.get("node", ""))
        what = f"{kind} of {task['id']}" if task.get("id") else kind
        if kind == "vzdump" and where == node:
            found.append(f"a backup (vzdump) is running on {node}: {task.get('upid', what)}")
        elif kind in MIGRATIONS:
            found.append(f"a migration is running on {where}: {what}")
    return found
