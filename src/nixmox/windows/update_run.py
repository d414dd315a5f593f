"""``update windows`` as the CLI starts it: which guests, and which door to each.

The door: the Proxmox API when a connection is configured (``[proxmox]`` or
``NIXMOX_PVE_*``): the agent through ``.../agent/*`` and the snapshots through
``.../snapshot``. Without one, on the Proxmox host itself: the VM's agent
socket (``/var/run/qemu-server/VMID.qga``, or under ``NIXMOX_QGA_DIR``) and
``qm`` for the VM's state and snapshots. Neither: a one-line error naming both.
"""

from __future__ import annotations

from collections.abc import Callable

from nixmox.adapters.guest_agent.via_api import ApiAgent
from nixmox.adapters.guest_agent.via_socket import SocketAgent
from nixmox.adapters.locks import Claim, guest_claims
from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.cluster import guest_status
from nixmox.adapters.proxmox.settings import connection
from nixmox.adapters.runner import Runner
from nixmox.core import interrupt
from nixmox.core.clock import Clock, SystemClock
from nixmox.core.errors import ConfigError
from nixmox.core.zones import zone
from nixmox.inventory.model import Guest, Inventory
from nixmox.updates.guest_snapshots import GuestSnapshots
from nixmox.updates.outcome import UpdateOutcome, UpdateSummary
from nixmox.updates.privileges import preflight, windows_needs
from nixmox.windows.update import Target, Timing, WindowsUpdate
from nixmox.windows.update_local import QmGuest

#: Seconds between two exec-status polls once a script has run a while (installs take hours).
POLL = 2.0


def windows_guests(inv: Inventory, names: list[str]) -> list[Guest]:
    """The guests to update: those named, else every guest updated the Windows way."""
    ours = [g for g in inv.guests if g.update is not None and g.update.method == "windows"]
    if not names:
        if not ours:
            raise ConfigError('no guest has [guests.update] method = "windows": nothing to update')
        return ours
    known = {g.name: g for g in inv.guests}
    chosen = []
    for name in names:
        guest = known.get(name)
        if guest is None:
            raise ConfigError(f"--guest {name}: no such guest in the inventory")
        if guest not in ours:
            raise ConfigError(f'--guest {name}: its [guests.update] method is not "windows"')
        chosen.append(guest)
    return chosen


def windows_claims(inv: Inventory, names: list[str]) -> list[Claim]:
    """What an ``update windows`` run locks: its guests (and their nodes, shared)."""
    return guest_claims((g.vmid, g.node) for g in windows_guests(inv, names))


def targets(inv: Inventory, guests: list[Guest], *, dry_run: bool) -> list[Target]:
    """Each guest with its agent, snapshots and running check (see the module docstring)."""
    for guest in guests:
        if guest.kind != "vm":
            raise ConfigError(f"{guest.name}: Windows updates need a VM, not a container")
        via = guest.update.via if guest.update else None
        if via not in (None, "agent"):
            raise ConfigError(
                f'{guest.name}: update windows goes through the guest agent, not via = "{via}"'
            )
    try:
        conn = connection(inv.proxmox)
    except ConfigError as exc:
        return [_local(guest, str(exc), Runner(dry_run=dry_run)) for guest in guests]
    api = Proxmox(conn)
    needs = [need for g in guests for need in windows_needs(g)]
    preflight(api, needs, "update windows", dry_run=dry_run)
    out = []
    for guest in guests:

        def running(guest: Guest = guest) -> bool:
            return guest_status(api, guest.node, "qemu", guest.vmid).get("status") == "running"

        out.append(
            Target(
                guest,
                ApiAgent(api, guest.node, guest.vmid, poll=POLL),
                GuestSnapshots(api, guest.node, "qemu", guest.vmid),
                running,
            )
        )
    return out


def _local(guest: Guest, why: str, runner: Runner) -> Target:
    agent = SocketAgent(guest.vmid, poll=POLL)
    if not agent.exists():
        raise ConfigError(
            f"{why}; and no agent socket {agent.path} on this host: update windows needs "
            "the Proxmox API or to run on the VM's own host"
        )
    qm = QmGuest(runner, guest.vmid)
    return Target(guest, agent, qm, qm.running, via=f"agent socket {agent.path}")


def prepare_windows_update(
    inv: Inventory,
    names: list[str],
    *,
    dry_run: bool,
    clock: Clock | None = None,
    timing: Timing | None = None,
) -> Callable[[], UpdateSummary]:
    """Windows Update on the chosen guests, one after another."""
    tz = zone(inv.timezone)
    chosen = targets(inv, windows_guests(inv, names), dry_run=dry_run)

    def one(target: Target) -> UpdateOutcome:
        if interrupt.stopping():
            why = f"not started: interrupted by {interrupt.signal_name()}"
            return UpdateOutcome(target.guest.name, target.guest.vmid, "skipped", message=why)
        return WindowsUpdate(target, tz, clock or SystemClock(), timing or Timing(), dry_run).run()

    def update_guests() -> UpdateSummary:
        return UpdateSummary(tuple(one(t) for t in chosen))

    return update_guests
