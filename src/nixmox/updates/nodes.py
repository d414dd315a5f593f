"""Where a command for a Proxmox node runs: here, or over SSH to its ``address``
(:func:`nixmox.adapters.runner.node_remote`)."""

from __future__ import annotations

import socket

from nixmox.inventory.model import Node

LOCAL_ADDRESSES = frozenset({"localhost", "127.0.0.1", "::1"})


def this_host() -> str:
    """This machine's short host name (what a Proxmox node is called)."""
    return socket.gethostname().split(".", 1)[0]


def nixmox_runs_on(node: Node, hostname: str) -> bool | None:
    """True when nixmox runs on ``node``, False when it reaches it over SSH,
    None when it cannot reach it at all (no address, and not this machine)."""
    if node.address in LOCAL_ADDRESSES or node.name == hostname:
        return True
    return False if node.address else None
