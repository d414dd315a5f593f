"""What a copy of a guest must not take from the original (pure).

A restored copy (``restore --as``, ``backup verify``'s scratch guest) carries
the original's whole config. Started as it is, it would grab the original's
passthrough devices (``hostpci*``: the GPU; ``usb*``: the gaming seat's
keyboard), start itself when the node boots (``onboot``, ``startup``), run the
original's hook script, and answer on the original's network with its MAC and
IP. :func:`copy_changes` is the one list of what nixmox takes away before any
copy starts; :func:`memory_problem` is the check that the node can hold it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Keys a copy never keeps: passthrough devices, autostart and the hook script.
_OWNED = re.compile(r"(hostpci\d+|usb\d+|onboot|startup|hookscript)")
_NIC = re.compile(r"net\d+")
MIB = 1024**2


@dataclass(frozen=True)
class CopyChanges:
    """The config write that makes a restored copy safe to start."""

    delete: tuple[str, ...] = ()  # keys to remove (``delete=`` of the config PUT)
    set: Mapping[str, str] = field(default_factory=dict)  # NICs with link_down=1

    @property
    def removed(self) -> list[str]:
        """What the copy lost, in words for the report (``hostpci0``, ``onboot``, ...)."""
        return list(self.delete)

    @property
    def params(self) -> dict[str, Any]:
        """The PUT parameters (without the caller's own, like a description)."""
        params: dict[str, Any] = dict(self.set)
        if self.delete:
            params["delete"] = ",".join(self.delete)
        return params

    @property
    def removals(self) -> dict[str, Any]:
        """Only the removals, as a PUT of their own: Proxmox lets only root@pam remove a
        raw (unmapped) ``hostpci``/``usb`` device, while the NICs go down for anyone
        who may configure the network, so a refused removal still leaves them down."""
        return {"delete": ",".join(self.delete)} if self.delete else {}


def copy_changes(config: Mapping[str, Any]) -> CopyChanges:
    """What to remove from and change on a restored copy's ``config`` before it starts."""
    delete = tuple(sorted((k for k in config if _OWNED.fullmatch(k)), key=_natural))
    down = {
        k: f"{v},link_down=1"
        for k, v in sorted(config.items(), key=lambda kv: _natural(kv[0]))
        if _NIC.fullmatch(k) and "link_down=1" not in str(v)
    }
    return CopyChanges(delete, down)


def _natural(key: str) -> tuple[str, int]:
    found = re.fullmatch(r"([a-z]+)(\d*)", key)
    if found is None:
        return key, -1
    return found.group(1), int(found.group(2) or -1)


def config_memory(config: Mapping[str, Any]) -> int:
    """The memory a guest's config asks for, in bytes (PVE's default 512 MiB)."""
    try:
        return int(str(config.get("memory") or 512).split(",", 1)[0]) * MIB
    except ValueError:
        return 512 * MIB


def memory_problem(need: int, node_status: Mapping[str, Any], node: str) -> str | None:
    """Why the node cannot hold a copy that needs ``need`` bytes more, or ``None``.

    ``node_status`` is ``/nodes/{node}/status``; its ``memory.available``
    (else ``free``) is what a new guest can take without swapping others out.
    """
    memory = node_status.get("memory") or {}
    free = memory.get("available", memory.get("free")) if isinstance(memory, Mapping) else None
    if not isinstance(free, int | float):
        return None  # nothing to judge by: Proxmox itself refuses a start without memory
    if free < need:
        return (
            f"node {node} has {int(free) // MIB} MiB of memory available, "
            f"the copy needs {need // MIB} MiB"
        )
    return None
