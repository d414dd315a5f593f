"""`nixmox update nixos`: pick the guests, run (or plan) each transaction, report."""

from __future__ import annotations

from pathlib import Path

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.settings import connection
from nixmox.adapters.runner import Runner
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.errors import ConfigError, NixmoxError
from nixmox.core.zones import zone
from nixmox.inventory.load import find_inventory, load_inventory
from nixmox.inventory.model import Guest, Inventory
from nixmox.runtime.run import observed_run
from nixmox.updates import outcome
from nixmox.updates.guest_access import open_access
from nixmox.updates.guest_snapshots import GuestSnapshots
from nixmox.updates.nixos.job import NixosUpdate
from nixmox.updates.outcome import Outcome
from nixmox.updates.privileges import nixos_needs, preflight


def chosen_guests(inv: Inventory, names: list[str]) -> list[Guest]:
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


def _job(
    inv: Inventory, guest: Guest, api: Proxmox | None, runner: Runner, clock: Clock
) -> NixosUpdate:
    node = next((n for n in inv.nodes if n.name == guest.node), None)
    access = open_access(guest, node, runner, api)
    snaps = None
    if api is not None:
        snaps = GuestSnapshots(api, guest.node, "qemu" if guest.kind == "vm" else "lxc", guest.vmid)
    return NixosUpdate(
        guest, access, snaps, zone(inv.timezone), dry_run=runner.dry_run, clock=clock
    )


def _one(job: NixosUpdate) -> Outcome:
    """One guest's transaction; an error nobody expected fails that guest, not the run."""
    try:
        return job.run()
    except NixmoxError as exc:
        return Outcome(job.guest.name, job.guest.vmid, "failed", message=str(exc))


def run(
    config: Path | None,
    names: list[str],
    *,
    dry_run: bool,
    as_json: bool,
    verbose: int,
    clock: Clock = SYSTEM_CLOCK,
) -> int:
    """Update (or with ``dry_run`` plan) the NixOS guests; exit 0 ok, 1 failed or rolled back."""
    inv = load_inventory(find_inventory(config))
    guests = chosen_guests(inv, names)
    runner = Runner(dry_run=dry_run)
    api: Proxmox | None
    try:
        api = Proxmox(connection(inv.proxmox))
    except NixmoxError:
        if not dry_run:
            raise
        api = None  # a plan can still be shown without the API
    jobs = [_job(inv, g, api, runner, clock) for g in guests]  # ConfigErrors before anything runs
    if api is not None:
        needs = [need for g in guests for need in nixos_needs(g)]
        preflight(api, needs, "update nixos", dry_run=dry_run)
    outcomes: list[Outcome]
    if dry_run:
        outcomes = [job.run() for job in jobs]  # the plan: nothing changes, nothing journaled
    else:
        with observed_run(inv, "update nixos") as journaled:
            outcomes = [_one(job) for job in jobs]
            journaled.result = outcome.run_result(outcomes)
            journaled.summary = outcome.summary(outcomes)
    outcome.report(outcomes, as_json=as_json, dry_run=dry_run, title="update nixos")
    if not as_json and (dry_run or verbose > 0):
        for o in outcomes:
            print(f"\n{o.guest}:")
            for step in o.steps:
                print(f"  {step}")
    return 0 if dry_run else outcome.exit_code(outcomes)
