"""May nixmox reboot a node, or stop a guest for it, now? Pure decisions.

A reboot window is a systemd calendar spec read as a set of times: now is
inside when the spec matches now. Time fields that end the spec as single
zeros count as ``*``, so ``Sun 04:00`` (``Sun *-*-* 04:00:00``) is Sunday
04:00-04:59, ``Sat 03..05:00`` is Saturday 03:00-05:59 and ``Sun`` is all
of Sunday; ``Sat 04:30`` is the one minute 04:30. The spec's own time zone
applies when it names one, else the inventory's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from nixmox.inventory.model import Guest, Node
from nixmox.rules.window import window_open


@dataclass(frozen=True)
class Verdict:
    """Allowed or not, and why in words."""

    allowed: bool
    reason: str


def node_reboot(node: Node, now: datetime, zone: tzinfo) -> Verdict:
    """May ``update host`` reboot ``node`` now (``reboot`` = never, allowed or window)?"""
    if node.reboot == "allowed":
        return Verdict(True, "reboot = allowed")
    if node.reboot == "window" and node.reboot_window is not None:
        if window_open(node.reboot_window, now, zone):
            return Verdict(True, f"inside the reboot window {node.reboot_window}")
        return Verdict(False, f"outside the reboot window {node.reboot_window}")
    return Verdict(False, "reboot = never")


def guest_stop(guest: Guest, now: datetime, zone: tzinfo) -> Verdict:
    """May nixmox stop (or restart) the running ``guest`` now: for a host reboot, or
    to boot a NixOS guest into its new kernel?

    ``when-idle`` is not judged here: whether a game or download runs is the
    Windows update's business, so neither ever stops such a guest.
    """
    policy = guest.reboot.policy
    if policy == "allowed":
        return Verdict(True, "reboot policy allowed")
    if policy == "window" and guest.reboot.window is not None:
        if window_open(guest.reboot.window, now, zone):
            return Verdict(True, f"inside its reboot window {guest.reboot.window}")
        return Verdict(False, f"reboot policy: outside its window {guest.reboot.window}")
    if policy == "when-idle":
        return Verdict(False, "reboot policy when-idle (not judged for a host reboot)")
    return Verdict(False, "reboot policy never")
