"""`nixmox windows provision`."""

from __future__ import annotations

import json
from pathlib import Path

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.settings import connection
from nixmox.core.errors import ConfigError
from nixmox.core.tables import print_table
from nixmox.inventory.load import find_inventory, load_inventory
from nixmox.inventory.model import Guest, Inventory
from nixmox.runtime.run import observed_run
from nixmox.windows.provision import provision as run_steps
from nixmox.windows.provision_plan import StepResult, exit_code


def _guest(inv: Inventory, name: str) -> Guest:
    guest = next((g for g in inv.guests if g.name == name), None)
    if guest is None:
        raise ConfigError(f"--guest {name}: no such guest in the inventory")
    if guest.kind != "vm" or guest.os != "windows":
        raise ConfigError(f'--guest {name}: not a Windows VM (kind = "vm", os = "windows")')
    settings = guest.windows
    if settings is None:
        raise ConfigError(f"--guest {name}: no [guests.windows] section: nothing to provision")
    if (settings.steam or settings.rust == "client") and not settings.user:
        raise ConfigError(
            f"--guest {name}: windows.user is not set (Steam starts at that user's logon)"
        )
    return guest


def provision(config: Path | None, name: str, *, dry_run: bool, as_json: bool) -> int:
    """Provision one Windows guest; exit 0 when every step is ok, 1 otherwise."""
    inv = load_inventory(find_inventory(config))
    guest = _guest(inv, name)
    api = Proxmox(connection(inv.proxmox))
    if dry_run:
        results = run_steps(api, guest, dry_run=True)
    else:
        with observed_run(inv, "windows provision") as run:
            results = run_steps(api, guest)
            run.result = "ok" if exit_code(results) == 0 else "failed"
            run.summary = {
                "guests": [
                    {
                        "guest": guest.name,
                        "vmid": guest.vmid,
                        "result": run.result,
                        "message": "; ".join(
                            f"{r.step}: {r.detail}" for r in results if not r.ok and not r.skipped
                        ),
                        "steps": [r.as_dict() for r in results],
                    }
                ]
            }
    if as_json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        _print(guest, results, dry_run)
    return exit_code(results)


def _print(guest: Guest, results: list[StepResult], dry_run: bool) -> None:
    rows = [("step", "result", "detail")]
    rows += [(r.step, r.outcome.upper(), r.detail) for r in results]
    print_table(rows)
    failed = [r.step for r in results if not r.ok or r.skipped]
    pending = [r.step for r in results if r.pending]
    reboot = any(r.reboot for r in results)
    verb = "checked (dry run)" if dry_run else "provisioned"
    line = f"{guest.name} ({guest.vmid}): {verb}"
    if failed:
        line += f", failed: {', '.join(failed)}"
    if pending:
        line += f", left to the user: {', '.join(pending)}"
    if reboot:
        line += ", reboot needed"
    print(line)
