"""A Lab whose VM agents are real: agent calls for chosen VMs go to a real ``qemu-ga``.

fakepve answers agent commands from scripted data; here, for the VMs in
``agents`` (vmid → the agent's unix socket), the request is forwarded with
PVE's own wrapping instead: ``exec`` becomes ``guest-exec`` (``path`` + ``arg``,
output captured, ``input-data`` base64-encoded), ``exec-status`` answers with
the output base64-decoded (as PVE does), and an agent error becomes HTTP 500
``Agent error: <desc>``. Other VMs keep fakepve's scripted answers.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

from fakepve.model import PveError

from tests.peers.qga import QgaClient, QgaError

from .server import Lab

# PVE's agent endpoint name → the qemu-ga command it runs.
_COMMANDS = {"ping": "guest-ping", "exec": "guest-exec", "exec-status": "guest-exec-status"}


class AgentForwardingLab(Lab):
    """:class:`Lab` with real agents for the VMs in ``agents``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.agents: dict[int, Path] = {}

    async def _agent_call(self, match: Any, values: dict[str, Any]) -> Any:
        vmid = int(values["vmid"])
        command = match.template.rsplit("/", 1)[1]
        socket = self.agents.get(vmid)
        if socket is None or command not in _COMMANDS:
            return await super()._agent_call(match, values)
        vm = self.find(values["node"], vmid)
        if vm.status != "running":
            raise PveError(500, "QEMU guest agent is not running")
        vm.agent_requests.append((command, {k: v for k, v in values.items() if k != "node"}))
        return await asyncio.to_thread(_forward, socket, command, values)


def _forward(socket: Path, command: str, values: dict[str, Any]) -> Any:
    arguments: dict[str, Any] | None = None
    if command == "exec":
        argv = list(values["command"])
        arguments = {"path": argv[0], "arg": argv[1:], "capture-output": True}
        if values.get("input-data") is not None:
            arguments["input-data"] = base64.b64encode(str(values["input-data"]).encode()).decode()
    elif command == "exec-status":
        arguments = {"pid": int(values["pid"])}
    try:
        with QgaClient(socket, timeout=30.0) as client:
            answer = client.call(_COMMANDS[command], arguments)
    except QgaError as exc:
        raise PveError(500, f"Agent error: {exc}") from None
    except (OSError, TimeoutError, ConnectionError) as exc:
        raise PveError(500, f"VM qmp command 'guest-ping' failed - {exc}") from None
    if command == "exec-status":
        for key in ("out-data", "err-data"):
            if key in answer:
                answer[key] = base64.b64decode(answer[key]).decode(errors="replace")
    return {} if command == "ping" else answer
