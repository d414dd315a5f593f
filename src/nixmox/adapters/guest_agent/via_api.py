"""The QEMU guest agent through the Proxmox API.

``POST .../agent/exec`` takes ``command`` as an array (PVE 8+) and optional
``input-data``; ``GET .../agent/exec-status?pid=`` answers ``exited: false``
until the command ends, then once with the exit code and the output (PVE has
already base64-decoded it); after that the pid is forgotten, so the first
``exited`` answer is the only one. ``file-write`` takes at most 60 KiB per
call. The direct client for the host's own agent socket lives in
:mod:`nixmox.adapters.guest_agent.via_socket`; both are a
:class:`~nixmox.adapters.guest_agent.GuestAgent`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nixmox.adapters.guest_agent import (
    AgentError,
    exec_result,
    not_answering,
    program,
    wait_exited,
)
from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.cluster import guest_path
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.errors import NixmoxError
from nixmox.core.results import CommandResult
from nixmox.core.text import printable

FILE_WRITE_MAX = 60 * 1024
INPUT_MAX = 64 * 1024


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
        return f"{guest_path(self.node, 'qemu', self.vmid)}/agent"

    def ping(self) -> None:
        try:
            self.api.post(f"{self.path}/ping")
        except NixmoxError as exc:
            raise not_answering(self.vmid, exc) from None

    def exec(
        self, argv: Sequence[str], *, input_data: str | None = None, timeout: float = 600.0
    ) -> CommandResult:
        name = program(argv)
        params: dict[str, Any] = {"command": list(argv)}
        if input_data is not None:
            if len(input_data.encode()) > INPUT_MAX:
                raise AgentError(f"input for {name} exceeds the agent's {INPUT_MAX} bytes")
            params["input-data"] = input_data
        try:
            started = self.api.post(f"{self.path}/exec", **params)
        except NixmoxError as exc:
            raise AgentError(f"{self.vmid}: could not start {name}: {exc}") from None
        pid = int(started["pid"])

        def status() -> dict[str, Any]:
            try:
                return dict(self.api.get(f"{self.path}/exec-status", pid=pid) or {})
            except NixmoxError as exc:
                raise AgentError(f"{self.vmid}: lost {name} (pid {pid}): {exc}") from None

        found = wait_exited(status, timeout, self.poll, self.clock, f"{self.vmid}: {name}")
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
        # The guest's file: no terminal escapes reach what nixmox prints from it.
        return printable(str(answer.get("content", "")))
