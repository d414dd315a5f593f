"""`update windows` on the Proxmox host itself, without an API token.

When no API connection is configured but the VM's agent socket exists on this
machine (``/var/run/qemu-server/VMID.qga``), the run talks to the agent
directly (:class:`~nixmox.adapters.guest_agent.via_socket.SocketAgent`) and
reads the VM's state and takes,
rolls back and deletes its snapshots with ``qm`` through the runner, which is
what the API would do on the same host. Only nixmox's own update snapshots
are ever deleted or pruned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import tzinfo

from nixmox.adapters.runner import Runner
from nixmox.rules.retention import Keep
from nixmox.updates.guest_snapshots import prune_update_snapshots, update_snapshot_time

#: One row of ``qm listsnapshot``'s tree: indentation, the arrow, then the name (a
#: Proxmox snapshot name: a letter, then letters, digits, ``_`` and ``-``). The date and
#: the description follow it; anchoring at the line's start keeps an arrow inside a
#: description (``-> nixmox_update_...``) from reading as a snapshot.
_ROW = re.compile(r"^[ |]*`-> ([A-Za-z][A-Za-z0-9_-]*)(?=\s|$)")


def snapshot_names(listing: str) -> list[str]:
    """The snapshot names in ``qm listsnapshot`` output (its tree, ``current`` left out).

    Only the name column counts: each row's first field after the tree's arrow.
    """
    names = []
    for line in listing.splitlines():
        found = _ROW.match(line)
        if found is not None and found.group(1) != "current":
            names.append(found.group(1))
    return names


@dataclass
class QmGuest:
    """VM ``vmid`` on this host, through ``qm``."""

    runner: Runner
    vmid: int
    qm: str = "qm"
    timeout: float = 1800.0

    def running(self) -> bool:
        """Whether ``qm status`` says the VM runs."""
        out = self.runner.run([self.qm, "status", str(self.vmid)], changes=False).stdout
        return out.split(":", 1)[-1].strip() == "running"

    def names(self) -> list[str]:
        out = self.runner.run([self.qm, "listsnapshot", str(self.vmid)], changes=False).stdout
        return snapshot_names(out)

    def take(self, name: str, *, description: str = "before a nixmox update") -> None:
        """A disk-only snapshot (``--vmstate 0``: a passed-through GPU cannot be saved)."""
        argv = [self.qm, "snapshot", str(self.vmid), name, "--vmstate", "0"]
        self.runner.run([*argv, "--description", description], timeout=self.timeout)

    def rollback(self, name: str, *, start: bool = True) -> None:
        argv = [self.qm, "rollback", str(self.vmid), name]
        if start:
            argv += ["--start", "1"]
        self.runner.run(argv, timeout=self.timeout)

    def delete(self, name: str) -> None:
        if update_snapshot_time(name) is None:
            raise ValueError(f"refusing to delete snapshot {name!r}: nixmox did not take it")
        self.runner.run([self.qm, "delsnapshot", str(self.vmid), name], timeout=self.timeout)

    def prune(self, keep: Keep, zone: tzinfo, *, dry_run: bool = False) -> list[str]:
        return prune_update_snapshots(self, keep, zone, dry_run=dry_run)
