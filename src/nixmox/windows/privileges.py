"""What ``windows provision`` needs the token to hold, from what the guest's settings ask.

Everything goes through the guest agent (qemu-server ``PVE/API2/Qemu/Agent.pm``:
PVE 9 asks ``VM.GuestAgent.Audit`` for ping and get-osinfo,
``VM.GuestAgent.FileWrite`` / ``.FileRead`` for file-write / file-read and
``VM.GuestAgent.Unrestricted`` for exec and exec-status; PVE 8 asks
``VM.Monitor`` for all of them), plus ``VM.Audit`` for the VM's status.
"""

from __future__ import annotations

from nixmox.adapters.proxmox.permissions import Need
from nixmox.inventory.model import Guest
from nixmox.updates.privileges import AGENT_AUDIT, AGENT_EXEC, AGENT_WRITE

AGENT_READ = "VM.GuestAgent.FileRead|VM.GuestAgent.Unrestricted|VM.Monitor"


def provision_needs(guest: Guest) -> list[Need]:
    """``windows provision`` of ``guest``: its status, and its agent (scripts written and
    run; Steam's library files read when Rust is asked for)."""
    vm = f"/vms/{guest.vmid}"
    needs = [
        Need(vm, "VM.Audit", f"read {guest.name}'s status"),
        Need(vm, AGENT_AUDIT, f"ping {guest.name}'s guest agent and read its OS"),
        Need(vm, AGENT_WRITE, f"write the provisioning scripts into {guest.name}"),
        Need(vm, AGENT_EXEC, f"run the provisioning scripts in {guest.name}"),
    ]
    if guest.windows is not None and guest.windows.rust in ("client", "server"):
        needs.append(Need(vm, AGENT_READ, f"read Steam's library files in {guest.name}"))
    return needs
