"""``windows provision`` as the CLI starts it: the guest checked, the work, its summary."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.permissions import preflight
from nixmox.adapters.proxmox.settings import connection
from nixmox.core import jsonrows
from nixmox.core.errors import ConfigError
from nixmox.inventory.model import Guest, Inventory
from nixmox.windows.privileges import provision_needs
from nixmox.windows.provision import provision
from nixmox.windows.provision_plan import StepResult, exit_code


def windows_guest(inv: Inventory, name: str) -> Guest:
    """The Windows VM ``--guest`` names, refused when there is nothing to provision."""
    guest = next((g for g in inv.guests if g.name == name), None)
    if guest is None:
        raise ConfigError(f"--guest {name}: no such guest in the inventory")
    if guest.kind != "vm" or guest.os != "windows":
        raise ConfigError(
            f'--guest {name}: not a Windows VM (provisioning needs kind = "vm" and '
            'os = "windows" in its [[guests]] entry)'
        )
    settings = guest.windows
    if settings is None:
        raise ConfigError(f"--guest {name}: no [guests.windows] section: nothing to provision")
    if (settings.steam or settings.rust == "client") and not settings.user:
        raise ConfigError(
            f"--guest {name}: windows.user is not set (Steam starts at that user's logon)"
        )
    return guest


def _step_from_json(row: Mapping[str, Any]) -> StepResult:
    return jsonrows.record(StepResult, row)


@dataclass(frozen=True)
class GuestProvision:
    """One guest's provisioning: its steps in order."""

    guest: str
    vmid: int
    steps: tuple[StepResult, ...]

    @property
    def result(self) -> str:
        return "ok" if exit_code(self.steps) == 0 else "failed"


@dataclass(frozen=True)
class ProvisionSummary:
    """A ``windows provision`` run (one guest today; the journal keeps a list)."""

    guests: tuple[GuestProvision, ...]

    @property
    def result(self) -> str:
        return "failed" if any(g.result != "ok" for g in self.guests) else "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            "guests": [
                {
                    "guest": g.guest,
                    "vmid": g.vmid,
                    "result": g.result,
                    "message": "; ".join(
                        f"{r.step}: {r.detail}" for r in g.steps if not r.ok and not r.skipped
                    ),
                    "steps": [r.as_dict() for r in g.steps],
                }
                for g in self.guests
            ]
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProvisionSummary:
        return cls(
            tuple(
                GuestProvision(
                    jsonrows.text(g, "guest"),
                    jsonrows.integer(g, "vmid"),
                    tuple(_step_from_json(s) for s in jsonrows.rows(g, "steps")),
                )
                for g in jsonrows.rows(data, "guests")
            )
        )


def prepare_provision(
    inv: Inventory, name: str, *, dry_run: bool
) -> tuple[Guest, Callable[[], ProvisionSummary]]:
    """The guest and its provisioning (with ``dry_run``, only checked), ready to run."""
    guest = windows_guest(inv, name)
    api = Proxmox(connection(inv.proxmox))
    preflight(api, provision_needs(guest), "windows provision", dry_run=dry_run)

    def run_steps() -> ProvisionSummary:
        steps = tuple(provision(api, guest, dry_run=dry_run))
        return ProvisionSummary((GuestProvision(guest.name, guest.vmid, steps),))

    return guest, run_steps
