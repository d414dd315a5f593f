"""Which guests leave a node before its reboot, and how: pure decisions.

A running VM moves to another node by online migration (it keeps running);
a VM with local devices (passed-through PCI or USB) cannot, and neither can
any guest when there is no other node, and neither can a VM with local disks
while it has Proxmox snapshots (PVE::QemuMigrate refuses an online storage
migration then): those are shut down cleanly before the reboot and started
again after it, but only when their reboot policy allows it now. A running
container migrates in restart mode, which is a restart, so it needs the same
permission. A guest nixmox does not manage
is neither moved nor stopped: while one runs, the node is not rebooted.
Anything that may not happen holds the node's reboot and moves nothing.

When the node reboots itself (nixmox runs on it), nobody is left to start
the stopped guests again: Proxmox's boot starts only those with ``onboot``,
so a running guest without it holds the reboot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Literal

from nixmox.inventory.model import Guest, Node
from nixmox.updates.reboot_policy import guest_stop

Kind = Literal["qemu", "lxc"]


@dataclass(frozen=True)
class RunningGuest:
    """A guest running on the node to be rebooted, as the API describes it."""

    vmid: int
    kind: Kind
    name: str
    # What PVE's migration check calls local resources (hostpci0, usb1): they pin a VM.
    local_resources: tuple[str, ...] = ()
    local_disks: bool = False
    # Nodes the migration check allows; None when it did not say.
    allowed_nodes: tuple[str, ...] | None = None
    # The VM has Proxmox snapshots: with local disks it cannot migrate online.
    has_snapshots: bool = False
    # Its config starts it when the node boots.
    onboot: bool = True

    @property
    def label(self) -> str:
        return f"{'VM' if self.kind == 'qemu' else 'CT'} {self.vmid} ({self.name})"


@dataclass(frozen=True)
class Move:
    """Migrate a guest to ``target`` (online for a VM, restart mode for a container)."""

    vmid: int
    kind: Kind
    name: str
    target: str
    with_local_disks: bool = False


@dataclass(frozen=True)
class Stop:
    """Shut a guest down cleanly before the reboot; start it again after."""

    vmid: int
    kind: Kind
    name: str
    why: str


@dataclass(frozen=True)
class Evacuation:
    """What happens to the node's running guests; ``holds`` non-empty: no reboot."""

    moves: tuple[Move, ...] = ()
    stops: tuple[Stop, ...] = ()
    holds: tuple[str, ...] = ()


def plan_evacuation(
    guests: Sequence[RunningGuest],
    targets: Sequence[str],
    declared: Mapping[int, Guest],
    now: datetime,
    zone: tzinfo,
    *,
    self_reboot: bool = False,
) -> Evacuation:
    """Decide for each running guest; ``targets``: the other online nodes, preferred first.

    ``self_reboot``: the node reboots itself and nobody starts what it stopped
    but its own boot (``onboot``).
    """
    moves: list[Move] = []
    stops: list[Stop] = []
    holds: list[str] = []
    for g in sorted(guests, key=lambda g: g.vmid):
        mine = declared.get(g.vmid)
        if mine is None:
            holds.append(f"{g.label} is not in the inventory: nixmox neither moves nor stops it")
            continue
        allowed = [t for t in targets if g.allowed_nodes is None or t in g.allowed_nodes]
        pinned = g.local_disks and g.has_snapshots
        if g.kind == "qemu" and not g.local_resources and not pinned and allowed:
            moves.append(Move(g.vmid, g.kind, g.name, allowed[0], g.local_disks))
            continue
        if g.kind == "qemu" and g.local_resources:
            why = f"cannot migrate: local devices {', '.join(g.local_resources)}"
        elif g.kind == "qemu" and pinned and allowed:
            why = "cannot migrate online: local disks and Proxmox snapshots"
        elif not targets:
            why = "no other node to move it to"
        elif not allowed:
            why = "no node it may migrate to"
        else:
            why = "migrating a container restarts it"
        verdict = guest_stop(mine, now, zone)
        if not verdict.allowed:
            holds.append(f"{g.label} {why}, and its {verdict.reason} forbids stopping it")
        elif self_reboot and not g.onboot:
            holds.append(
                f"{g.label} runs without onboot: the node's own boot would not start it "
                "again (stop it, or set onboot, first)"
            )
        elif g.kind == "lxc" and allowed:
            moves.append(Move(g.vmid, g.kind, g.name, allowed[0], g.local_disks))
        else:
            stops.append(Stop(g.vmid, g.kind, g.name, why))
    if holds:
        return Evacuation(holds=tuple(holds))
    return Evacuation(tuple(moves), tuple(stops))


def rollout_order(nodes: Sequence[Node], local: str | None) -> list[Node]:
    """The inventory's order, the node nixmox runs on last (its own reboot ends the run)."""
    return sorted(nodes, key=lambda n: n.name == local)
