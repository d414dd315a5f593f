"""How nixmox runs a command inside a NixOS guest: over SSH, the guest agent, or `pct exec`.

One interface (:class:`GuestAccess`) whatever the way in: run an argv or a
shell script and get its exit code and output back, and ask whether the guest
answers at all. A guest that cannot be reached raises :class:`GuestUnreachable`,
which the update turns into a Proxmox snapshot rollback after a switch.

- ``ssh``: the system ``ssh`` client through :class:`nixmox.adapters.runner.Runner`
  (the user's ssh config, agent and known_hosts apply; ``NIXMOX_SSH_CONFIG``
  names another config file).
- ``agent``: the QEMU guest agent of a VM through the Proxmox API. The agent
  starts programs without a login environment, so bare program names are
  looked up in NixOS's ``/run/current-system/sw/bin``.
- ``pct``: ``pct exec VMID`` on the node (locally, or over SSH to the node's
  ``address``); it gives no login environment either, so scripts source
  ``/etc/set-environment`` first.
"""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from nixmox.adapters.guest_agent import AgentError, GuestAgent
from nixmox.adapters.guest_agent.via_api import ApiAgent
from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.runner import Remote, Runner, node_remote
from nixmox.core.errors import CommandNotFound, CommandTimeout, ConfigError, NixmoxError
from nixmox.core.results import CommandResult
from nixmox.inventory.model import Guest, Node
from nixmox.updates import nodes
from nixmox.updates.nodes import nixmox_runs_on

NIXOS_BIN = "/run/current-system/sw/bin"
# pct exec and the agent start programs with a bare environment; NixOS keeps
# PATH and friends in this file (what a login shell sources).
SET_ENVIRONMENT = "if [ -e /etc/set-environment ]; then . /etc/set-environment; fi; "
REACH_TIMEOUT = 30.0

Command = Sequence[str] | str  # an argv, or a POSIX shell script


class GuestUnreachable(NixmoxError):
    """The guest does not answer (ssh refused or timed out, agent silent, pct failed)."""


class GuestAccess(Protocol):
    """A way into one guest."""

    @property
    def where(self) -> str:
        """How the guest is reached, in words (``ssh root@host``, ``agent of VM 101``)."""
        ...

    def run(
        self,
        command: Command,
        *,
        changes: bool = True,
        input: str | None = None,
        timeout: float = 600.0,
    ) -> CommandResult:
        """Run ``command``; ``changes=False`` marks it read-only (it runs under --dry-run)."""
        ...

    def reachable(self) -> str | None:
        """``None`` when the guest answers, else why not."""
        ...


def _skipped() -> CommandResult:
    return CommandResult(0, "", "", skipped=True)


class _ThroughRunner(ABC):
    """A way in whose commands go through the runner: over ssh (``host``), else here."""

    runner: Runner

    @property
    @abstractmethod
    def where(self) -> str: ...

    @property
    @abstractmethod
    def host(self) -> Remote | None:
        """Where the runner runs the argv (``None``: this machine)."""

    @abstractmethod
    def argv(self, command: Command) -> list[str]:
        """The argv the runner runs for ``command``."""

    def run(
        self,
        command: Command,
        *,
        changes: bool = True,
        input: str | None = None,
        timeout: float = 600.0,
    ) -> CommandResult:
        """ssh's own failures (exit 255: refused, no route, host key), a timeout or a
        missing program mean the guest cannot be reached."""
        try:
            result = self.runner.run(
                self.argv(command),
                remote=self.host,
                changes=changes,
                check=False,
                input=input,
                timeout=timeout,
            )
        except (CommandTimeout, CommandNotFound) as exc:
            raise GuestUnreachable(f"{self.where}: {exc}") from None
        if result.returncode == 255 and self.host is not None and not result.skipped:
            raise GuestUnreachable(f"{self.where}: {result.why()}")
        return result


@dataclass(frozen=True)
class SshAccess(_ThroughRunner):
    """The guest over SSH with the system client."""

    runner: Runner
    remote: Remote

    @property
    def where(self) -> str:
        return f"ssh {self.remote.destination}"

    @property
    def host(self) -> Remote:
        return self.remote

    def argv(self, command: Command) -> list[str]:
        return ["sh", "-c", command] if isinstance(command, str) else list(command)

    def reachable(self) -> str | None:
        quick = Remote(self.remote.destination, (*self.remote.options, "-o", "ConnectTimeout=10"))
        try:
            SshAccess(self.runner, quick).run(["true"], changes=False, timeout=REACH_TIMEOUT)
        except GuestUnreachable as exc:
            return str(exc)
        return None


@dataclass(frozen=True)
class AgentAccess:
    """A VM through its QEMU guest agent (via the Proxmox API)."""

    agent: GuestAgent
    vmid: int
    dry_run: bool = False

    @property
    def where(self) -> str:
        return f"guest agent of VM {self.vmid}"

    @staticmethod
    def argv(command: Command) -> list[str]:
        """The argv the agent is asked to start for ``command``."""
        if isinstance(command, str):
            return [f"{NIXOS_BIN}/sh", "-c", SET_ENVIRONMENT + command]
        argv = list(command)
        if argv and "/" not in argv[0]:
            argv[0] = f"{NIXOS_BIN}/{argv[0]}"
        return argv

    def run(
        self,
        command: Command,
        *,
        changes: bool = True,
        input: str | None = None,
        timeout: float = 600.0,
    ) -> CommandResult:
        if self.dry_run and changes:
            return _skipped()
        try:
            result = self.agent.exec(self.argv(command), input_data=input, timeout=timeout)
        except AgentError as exc:
            raise GuestUnreachable(str(exc)) from None
        return result

    def reachable(self) -> str | None:
        try:
            self.agent.ping()
        except AgentError as exc:
            return str(exc)
        return None


@dataclass(frozen=True)
class PctAccess(_ThroughRunner):
    """An LXC container entered with ``pct exec`` on its node (``node=None``: this machine)."""

    runner: Runner
    vmid: int
    node: Remote | None = None

    @property
    def where(self) -> str:
        on = f" on {self.node.destination}" if self.node is not None else ""
        return f"pct exec {self.vmid}{on}"

    def argv(self, command: Command) -> list[str]:
        """The ``pct exec`` argv run on the node for ``command``."""
        script = command if isinstance(command, str) else "exec " + shlex.join(command)
        return ["pct", "exec", str(self.vmid), "--", "/bin/sh", "-c", SET_ENVIRONMENT + script]

    @property
    def host(self) -> Remote | None:
        return self.node

    def reachable(self) -> str | None:
        try:
            reply = self.run(["true"], changes=False, timeout=REACH_TIMEOUT)
        except GuestUnreachable as exc:
            return str(exc)
        return None if reply.ok else f"{self.where}: {reply.why()}"


def via(guest: Guest) -> str:
    """How ``guest`` is reached: ``update.via``, else ssh when ``update.ssh`` is set,
    else the agent for a VM and ``pct exec`` for a container."""
    u = guest.update
    if u is not None and u.via is not None:
        return u.via
    if u is not None and u.ssh:
        return "ssh"
    return "agent" if guest.kind == "vm" else "pct"


def open_access(
    guest: Guest,
    node: Node | None,
    runner: Runner,
    api: Proxmox | None,
    *,
    this_host: str | None = None,
) -> GuestAccess:
    """The way into ``guest`` its inventory entry asks for (ConfigError if impossible).

    ``pct exec`` runs on this machine when it is the guest's node (same short
    host name) or the node has no ``address``; otherwise over SSH to
    ``ssh_user@address``.
    """
    way = via(guest)
    u = guest.update
    if way == "ssh":
        if u is None or not u.ssh:
            raise ConfigError(
                f"guest {guest.name}: update.via = 'ssh' needs update.ssh = USER@HOST"
            )
        return SshAccess(runner, Remote.to(u.ssh))
    if way == "agent":
        if guest.kind != "vm":
            raise ConfigError(
                f"guest {guest.name}: a container has no guest agent (use ssh or pct)"
            )
        if api is None:
            raise ConfigError(f"guest {guest.name}: the guest agent needs the Proxmox API")
        return AgentAccess(ApiAgent(api, guest.node, guest.vmid), guest.vmid, runner.dry_run)
    if guest.kind != "lxc":
        raise ConfigError(f"guest {guest.name}: pct exec only enters containers (use ssh or agent)")
    # On the node itself (or a node without an address): pct runs here.
    here = (this_host or nodes.this_host()).split(".")[0]
    remote = node_remote(node) if node is not None and nixmox_runs_on(node, here) is False else None
    return PctAccess(runner, guest.vmid, remote)
