"""The QEMU guest agent through the Proxmox API.

``POST .../agent/exec`` takes ``command`` as an array (PVE 8+) and optional
``input-data``; ``GET .../agent/exec-status?pid=`` answers ``exited: false``
until the command ends, then once with the exit code and the output (PVE has
already base64-decoded it); after that the pid is forgotten, so the first
``exited`` answer is the only one. ``file-write`` takes at most 60 KiB per
call. The direct client for the host's own agent socket lives in
:mod:`nixmox.adapters.guest_agent.via_socket` and offers the same :class:`GuestAgent` methods.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.errors import NixmoxError

FILE_WRITE_MAX = 60 * 1024
INPUT_MAX = 64 * 1024


class AgentError(NixmoxError):
    """The guest agent is not answering, or a command through it failed to run."""


class AgentTimeout(AgentError):
    """A command run through the agent did not finish in time."""


@dataclass(frozen=True)
class ExecResult:
    """A finished command inside the guest."""

    exitcode: int
    stdout: str
    stderr: str
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exitcode == 0


class GuestAgent(Protocol):
    """What nixmox asks of a guest agent, however it is reached."""

    def ping(self) -> None: ...

    def exec(
        self, argv: Sequence[str], *, input_data: str | None = None, timeout: float = 600.0
    ) -> ExecResult: ...

    def file_write(self, path: str, content: str) -> None: ...

    def file_read(self, path: str) -> str: ...


@dataclass
class ApiAgent:
    """The agent of VM ``vmid`` on ``node``, through the API."""

    api: Proxmox
    node: str
    vmid: int
    poll: float = 0.5
    clock: Clock = SYSTEM_CLOCK

    @property
    def path(self) -> str:
        return f"/nodes/{self.node}/qemu/{self.vmid}/agent"

    def ping(self) -> None:
        try:
            self.api.post(f"{self.path}/ping")
        except NixmoxError as exc:
            raise AgentError(f"the guest agent of {self.vmid} does not answer: {exc}") from None

    def exec(
        self, argv: Sequence[str], *, input_data: str | None = None, timeout: float = 600.0
    ) -> ExecResult:
        if not argv:
            raise ValueError("exec needs a command")
        params: dict[str, Any] = {"command": list(argv)}
        if input_data is not None:
            if len(input_data.encode()) > INPUT_MAX:
                raise AgentError(f"input for {argv[0]} exceeds the agent's {INPUT_MAX} bytes")
            params["input-data"] = input_data
        try:
            started = self.api.post(f"{self.path}/exec", **params)
        except NixmoxError as exc:
            raise AgentError(f"{self.vmid}: could not start {argv[0]}: {exc}") from None
        pid = int(started["pid"])

        def status() -> dict[str, Any]:
            try:
                return dict(self.api.get(f"{self.path}/exec-status", pid=pid) or {})
            except NixmoxError as exc:
                raise AgentError(f"{self.vmid}: lost {argv[0]} (pid {pid}): {exc}") from None

        found = wait_exited(status, timeout, self.poll, self.clock, f"{self.vmid}: {argv[0]}")
        return exec_result(found)

    def file_write(self, path: str, content: str) -> None:
        data = content.encode()
        if len(data) > FILE_WRITE_MAX:
            raise AgentError(
                f"{path}: {len(data)} bytes exceed the agent's {FILE_WRITE_MAX} per write"
            )
        try:
            self.api.post(f"{self.path}/file-write", file=path, content=content)
        except NixmoxError as exc:
            raise AgentError(f"{self.vmid}: could not write {path}: {exc}") from None

    def file_read(self, path: str) -> str:
        try:
            answer = self.api.get(f"{self.path}/file-read", file=path) or {}
        except NixmoxError as exc:
            raise AgentError(f"{self.vmid}: could not read {path}: {exc}") from None
        return str(answer.get("content", ""))


def wait_exited(
    status: Callable[[], dict[str, Any]],
    timeout: float,
    poll: float,
    clock: Clock,
    what: str,
) -> dict[str, Any]:
    """Ask ``status`` (an exec-status read) until it says ``exited``, backing off to
    ``poll`` seconds; that first exited answer is the only one (the agent then
    forgets the pid), so it is returned as is."""
    deadline = clock.monotonic() + timeout
    delay = min(poll, 0.05)
    while True:
        found = status()
        if found.get("exited"):
            return found
        if clock.monotonic() >= deadline:
            raise AgentTimeout(f"{what} still running after {timeout:g} s")
        clock.sleep(delay)
        delay = min(delay * 2, poll)


def exec_result(
    status: Mapping[str, Any], decode: Callable[[object], str] = lambda data: str(data or "")
) -> ExecResult:
    """The first ``exited`` exec-status answer as an :class:`ExecResult`; ``decode``
    turns the output fields into text (PVE has decoded them already, the agent
    itself sends base64). Killed by a signal: 128 + the signal, as a shell says."""
    code = status.get("exitcode")
    if code is None:
        signal = str(status.get("signal", ""))
        code = 128 + int(signal) if signal.isdigit() else 255
    return ExecResult(
        int(str(code)),
        decode(status.get("out-data")),
        decode(status.get("err-data")),
        bool(status.get("out-truncated") or status.get("err-truncated")),
    )
