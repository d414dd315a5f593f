"""What plan can know before apply: the inventory against what the cluster has.

Pure. Each problem names the inventory key it comes from, so plan prints it as
``FILE:LINE:COL: key.path: message``, the way ``config check`` does; ``apply``
applies nothing while there is one. Judged only where the cluster was read
(an :class:`~nixmox.provision.diff.ActualState` built by hand without nodes or
storages judges nothing), and only for what the plan will create or add: an
existing guest on a storage that is gone is doctor's business, not plan's.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass

from nixmox.inventory.locate import Path
from nixmox.inventory.model import Guest, Inventory

#: Proxmox's content types, in the words of its storage dialog.
CONTENT = {
    "rootdir": "container root disks",
    "images": "VM disks",
    "vztmpl": "container templates",
    "backup": "backups",
}


@dataclass(frozen=True)
class Problem:
    """One thing apply would fail on, at an inventory key."""

    path: Path
    message: str


def did_you_mean(word: str, known: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known word, or nothing."""
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class Storages:
    """Where each storage is enabled and what it holds: the cluster's, with the
    declared ``[[storages]]`` that plan will create or change laid over them."""

    #: (node, storage) -> content types; only where enabled.
    on_node: dict[tuple[str, str], frozenset[str]]
    #: Every storage id the cluster or the inventory knows.
    known: frozenset[str]
    #: Every node of the cluster.
    nodes: frozenset[str]
    #: Storages this token may not audit: /cluster/resources leaves them out.
    hidden: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        inv: Inventory,
        on_node: dict[tuple[str, str], frozenset[str]],
        configured: frozenset[str],
        nodes: frozenset[str],
        hidden: frozenset[str] = frozenset(),
    ) -> Storages:
        merged = dict(on_node)
        for storage in inv.storages:
            where = set(storage.nodes) or set(nodes)
            content = frozenset(storage.content)
            for node in nodes:
                key = (node, storage.storage)
                if node not in where:
                    merged.pop(key, None)
                elif content or key not in merged:
                    merged[key] = content or merged.get(key, frozenset())
        return cls(merged, configured | {s.storage for s in inv.storages}, nodes, hidden)

    def problem(self, storage: str, node: str, content: str) -> str | None:
        """Why ``storage`` cannot hold ``content`` on ``node``, or ``None``."""
        held = self.on_node.get((node, storage))
        if held is None:
            if storage in self.hidden:
                # Not "not enabled": /cluster/resources lists a storage only to Datastore.Audit.
                return (
                    f"this token cannot see storage {storage} "
                    f"(needs Datastore.Audit on /storage/{storage})"
                )
            if storage not in self.known:
                here = sorted(s for n, s in self.on_node if n == node)
                return (
                    f"storage {storage!r} does not exist{did_you_mean(storage, here)}; "
                    f"storages on {node}: {', '.join(here) or 'none'}"
                )
            return (
                f"storage {storage!r} is not enabled on node {node} "
                "(its `nodes` list leaves it out, or it is disabled)"
            )
        if content not in held:
            fitting = sorted(s for (n, s), c in self.on_node.items() if n == node and content in c)
            hint = (
                f"; storages on {node} that do: {', '.join(fitting)}"
                if fitting
                else f"; add {content} to a storage's content"
            )
            return (
                f"storage {storage!r} does not hold {CONTENT.get(content, content)} "
                f"(content {content}; it has {','.join(sorted(held)) or 'nothing'}){hint}"
            )
        return None

    def fitting(self, node: str, content: str) -> list[str]:
        """The storages on ``node`` that hold ``content``."""
        return sorted(s for (n, s), c in self.on_node.items() if n == node and content in c)


def node_problem(node: str, nodes: dict[str, str]) -> str | None:
    """Why nothing can be made on ``node``: not in the cluster, or not online."""
    status = nodes.get(node)
    if status is None:
        return f"node {node!r} is not in the cluster{did_you_mean(node, sorted(nodes))}"
    if status != "online":
        return f"node {node} is {status}: nothing can be created or changed there now"
    return None


def guest_problems(
    i: int,
    guest: Guest,
    *,
    creating: bool,
    new_slots: frozenset[str],
    storages: Storages,
    nodes: dict[str, str],
    bridges: set[tuple[str, str]] | None,
) -> Iterator[Problem]:
    """What stands in the way of creating ``guest`` (or of adding ``new_slots`` to it).

    ``bridges``: the (node, bridge) pairs that exist or will; ``None`` when unknown.
    """
    at: Path = ("guests", i)
    if creating:
        problem = node_problem(guest.node, nodes)
        if problem is not None:
            yield Problem((*at, "node"), problem)
            return
        if guest.kind == "lxc" and guest.rootfs is None:
            fitting = storages.fitting(guest.node, "rootdir")
            example = fitting[0] if fitting else "STORAGE"
            yield Problem(
                at,
                "a container needs a root disk: add [guests.rootfs] with "
                f'storage = "{example}" and size = "8G"'
                + (f" (storages on {guest.node} for it: {', '.join(fitting)})" if fitting else ""),
            )
    volumes: list[tuple[Path, str, str, str]] = []  # path, slot, storage, content
    if guest.rootfs is not None:
        volumes.append(((*at, "rootfs", "storage"), "rootfs", guest.rootfs.storage, "rootdir"))
    for j, disk in enumerate(guest.disks):
        volumes.append(((*at, "disks", j, "storage"), disk.slot, disk.storage, "images"))
    if guest.efidisk is not None:
        volumes.append(((*at, "efidisk", "storage"), "efidisk0", guest.efidisk.storage, "images"))
    if guest.tpmstate is not None:
        volumes.append(
            ((*at, "tpmstate", "storage"), "tpmstate0", guest.tpmstate.storage, "images")
        )
    if creating and guest.template is not None:
        volumes.append(((*at, "template"), "", guest.template.split(":", 1)[0], "vztmpl"))
    for path, slot, storage, content in volumes:
        if creating or slot in new_slots:
            problem = storages.problem(storage, guest.node, content)
            if problem is not None:
                yield Problem(path, problem)
    if bridges is None:
        return
    for j, net in enumerate(guest.net):
        if (creating or f"net{j}" in new_slots) and (guest.node, net.bridge) not in bridges:
            known = sorted(b for n, b in bridges if n == guest.node)
            yield Problem(
                (*at, "net", j, "bridge"),
                f"bridge {net.bridge!r} does not exist on {guest.node} and is not declared in "
                f"[[bridges]]{did_you_mean(net.bridge, known)}",
            )


def backup_problems(inv: Inventory, storages: Storages) -> Iterator[Problem]:
    """The backup storage must hold backups on every node of a backed-up guest;
    the verify storage VM disks."""
    backups = inv.backups
    if backups is None:
        return
    names = set(backups.guests or [g.name for g in inv.guests]) - set(backups.exclude)
    nodes = sorted({g.node for g in inv.guests if g.name in names and g.node in storages.nodes})
    for node in nodes:
        problem = storages.problem(backups.storage, node, "backup")
        if problem is not None:
            yield Problem(("backups", "storage"), problem)
            break
    verify = backups.verify
    if verify is not None and verify.storage is not None:
        for node in nodes:
            problem = storages.problem(verify.storage, node, "images")
            if problem is not None:
                yield Problem(("backups", "verify", "storage"), problem)
                break
