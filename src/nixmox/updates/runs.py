"""``update host`` and ``update nixos`` runs as the CLI starts them.

Each ``prepare_*`` picks the targets, opens the doors to them and checks the
token's privileges before anything changes, and returns the work for
:func:`nixmox.runtime.run.run_job`; the work returns an
:class:`~nixmox.updates.outcome.UpdateSummary`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nixmox.adapters.locks import Claim, guest_claims
from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.settings import connection
from nixmox.adapters.runner import Runner
from nixmox.core import interrupt
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.errors import ConfigError, NixmoxError
from nixmox.core.zones import zone
from nixmox.inventory.model import Guest, Inventory
from nixmox.updates.guest_access import open_access
from nixmox.updates.guest_snapshots import GuestSnapshots
from nixmox.updates.host.job import HostUpdate
from nixmox.updates.nixos.job import NixosUpdate
from nixmox.updates.outcome import UpdateOutcome, UpdateSummary
from nixmox.updates.privileges import cluster_has_peers, host_needs, nixos_needs, preflight


@dataclass(frozen=True)
class HostUpdateRun:
    """A checked ``update host``: the work, then what it found and this node's own reboot."""

    update: HostUpdate
    nodes: list[str]
    work: Callable[[], UpdateSummary]

    @property
    def upgrades(self) -> dict[str, list[str]]:
        """Per node, the upgrades the run found (after :attr:`work` ran)."""
        return {name: [str(u) for u in found] for name, found in self.update.upgrades.items()}

    def reboot_self(self) -> str | None:
        """This node's own reboot, held until the run is journaled and reported;
        why it was held after all, or None."""
        return self.update.reboot_self()


def prepare_host_update(inv: Inventory, node: str | None, *, dry_run: bool) -> HostUpdateRun:
    """Update the selected nodes (all declared ones by default), one at a time."""
    if not inv.nodes:
        raise ConfigError(
            "the inventory declares no [[nodes]]: update host needs each node's address, "
            "root_dataset and reboot policy"
        )
    nodes = list(inv.nodes)
    if node is not None:
        nodes = [n for n in nodes if n.name == node]
        if not nodes:
            raise ConfigError(f"--node {node}: no such node in the inventory")
    api = Proxmox(connection(inv.proxmox))
    peers = cluster_has_peers(api)
    needs = [need for n in nodes for need in host_needs(n, inv.guests, migrate=peers)]
    preflight(api, needs, "update host", dry_run=dry_run)
    update = HostUpdate(inv, api, Runner(dry_run=dry_run), zone(inv.timezone))

    def update_nodes() -> UpdateSummary:
        return UpdateSummary(tuple(update.run(nodes)))

    return HostUpdateRun(update, [n.name for n in nodes], update_nodes)


def nixos_guests(inv: Inventory, names: list[str]) -> list[Guest]:
    """The guests ``--guest`` names (each must be a NixOS-updated guest), else all of them."""
    nixos = [g for g in inv.guests if g.update is not None and g.update.method == "nixos"]
    if not names:
        if not nixos:
            raise ConfigError("no guest has [guests.update] method = 'nixos': nothing to update")
        return nixos
    out = []
    for name in names:
        try:
            guest = inv.guest(name)
        except KeyError:
            raise ConfigError(f"--guest {name}: no such guest in the inventory") from None
        if guest not in nixos:
            raise ConfigError(
                f"--guest {name}: not updated as NixOS (its update.method is not 'nixos')"
            )
        out.append(guest)
    return out


def nixos_claims(inv: Inventory, names: list[str]) -> list[Claim]:
    """What an ``update nixos`` run locks: its guests (and their nodes, shared)."""
    return guest_claims((g.vmid, g.node) for g in nixos_guests(inv, names))


def _nixos_job(
    inv: Inventory, guest: Guest, api: Proxmox | None, runner: Runner, clock: Clock
) -> NixosUpdate:
    node = next((n for n in inv.nodes if n.name == guest.node), None)
    access = open_access(guest, node, runner, api)
    snaps = None
    if api is not None:
        snaps = GuestSnapshots(api, guest.node, guest.pve_type, guest.vmid)
    return NixosUpdate(
        guest, access, snaps, zone(inv.timezone), dry_run=runner.dry_run, clock=clock
    )


def _one(job: NixosUpdate) -> UpdateOutcome:
    """One guest's transaction; an error nobody expected fails that guest, not the run."""
    if interrupt.stopping():
        why = f"not started: interrupted by {interrupt.signal_name()}"
        return UpdateOutcome(job.guest.name, job.guest.vmid, "skipped", message=why)
    try:
        return job.run()
    except NixmoxError as exc:
        return UpdateOutcome(job.guest.name, job.guest.vmid, "failed", message=str(exc))


def prepare_nixos_update(
    inv: Inventory, names: list[str], *, dry_run: bool, clock: Clock = SYSTEM_CLOCK
) -> Callable[[], UpdateSummary]:
    """Update (or with ``dry_run`` plan) the chosen NixOS guests."""
    guests = nixos_guests(inv, names)
    runner = Runner(dry_run=dry_run)
    api: Proxmox | None
    try:
        api = Proxmox(connection(inv.proxmox))
    except NixmoxError:
        if not dry_run:
            raise
        api = None  # a plan can still be shown without the API
    # ConfigErrors before anything runs.
    jobs = [_nixos_job(inv, g, api, runner, clock) for g in guests]
    if api is not None:
        needs = [need for g in guests for need in nixos_needs(g)]
        preflight(api, needs, "update nixos", dry_run=dry_run)

    def update_guests() -> UpdateSummary:
        if dry_run:  # the plan: an unexpected error is the user's to see
            return UpdateSummary(tuple(job.run() for job in jobs))
        return UpdateSummary(tuple(_one(job) for job in jobs))

    return update_guests
