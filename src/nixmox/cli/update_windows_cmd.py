"""`nixmox update windows [--guest NAME]... [--dry-run] [--json]`.

Which door a run uses: the Proxmox API when a connection is configured
(``[proxmox]`` or ``NIXMOX_PVE_*``): the agent through ``.../agent/*`` and the
snapshots through ``.../snapshot``. Without one, on the Proxmox host itself:
the VM's agent socket (``/var/run/qemu-server/VMID.qga``, or under
``NIXMOX_QGA_DIR``) and ``qm`` for the VM's state and snapshots. Neither: a
one-line error naming both.
"""

from __future__ import annotations

import logging
from pathlib import Path

from nixmox.adapters.guest_agent.via_api import ApiAgent
from nixmox.adapters.guest_agent.via_socket import SocketAgent
from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.settings import connection
from nixmox.adapters.runner import Runner
from nixmox.core.clock import Clock, SystemClock
from nixmox.core.errors import ConfigError
from nixmox.core.zones import zone
from nixmox.inventory.load import find_inventory, load_inventory
from nixmox.inventory.model import Guest, Inventory
from nixmox.runtime.run import observed_run
from nixmox.updates.guest_snapshots import GuestSnapshots
from nixmox.updates.outcome import Outcome, exit_code, report, run_result, summary
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
        status = f"/nodes/{guest.node}/qemu/{guest.vmid}/status/current"

        def running(path: str = status) -> bool:
            return (api.get(path) or {}).get("status") == "running"

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


def run(
    config: Path | None,
    names: list[str],
    *,
    dry_run: bool,
    as_json: bool,
    clock: Clock | None = None,
    timing: Timing | None = None,
) -> int:
    """Update the Windows guests; exit 0 unless one failed or was rolled back."""
    inv = load_inventory(find_inventory(config))
    tz = zone(inv.timezone)
    chosen = targets(inv, windows_guests(inv, names), dry_run=dry_run)

    def go() -> list[Outcome]:
        return [
            WindowsUpdate(t, tz, clock or SystemClock(), timing or Timing(), dry_run).run()
            for t in chosen
        ]

    if dry_run:
        outcomes = go()
    else:
        with observed_run(inv, "update windows") as journal:
            outcomes = go()
            journal.summary = summary(outcomes)
            journal.result = run_result(outcomes)
    report(outcomes, as_json=as_json, dry_run=dry_run, title="update windows")
    if not as_json and (dry_run or logging.getLogger("nixmox").isEnabledFor(logging.DEBUG)):
        # The plan (what would be installed) always; every step with -v.
        for o in outcomes:
            for step in o.steps:
                print(f"{o.guest}: {step}")
    return exit_code(outcomes)
