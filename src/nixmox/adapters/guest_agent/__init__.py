"""The QEMU guest agent, behind one interface however it is reached.

:class:`GuestAgent` is what callers use: ping, run a command and get its
:class:`~nixmox.core.results.CommandResult`, write and read a file. Two
transports implement it: :class:`~nixmox.adapters.guest_agent.via_api.ApiAgent`
(through the Proxmox API) and :class:`~nixmox.adapters.guest_agent.via_socket.SocketAgent`
(the agent's socket on the Proxmox host itself, for runs without an API token).
Both read a command's end the same way (:func:`wait_exited`, :func:`exec_result`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from nixmox.core.clock import Clock
from nixmox.core.errors import NixmoxError
from nixmox.core.results import CommandResult
from nixmox.core.text import printable


class AgentError(NixmoxError):
    """The guest agent is not answering, or a command through it failed to run."""


class AgentTimeout(AgentError):
    """A command run through the agent did not finish in time."""


class GuestAgent(Protocol):
    """What nixmox asks of a guest agent, however it is reached."""

    def ping(self) -> None:
        """Return when the agent answers; :class:`AgentError` when it does not."""
        ...

    def exec(
        self, argv: Sequence[str], *, input_data: str | None = None, timeout: float = 600.0
    ) -> CommandResult:
        """Run ``argv`` in the guest (``input_data`` on its stdin) and wait for it to end;
        :class:`AgentTimeout` after ``timeout`` seconds."""
        ...

    def file_write(self, path: str, content: str) -> None:
        """Write ``content`` to ``path`` in the guest, replacing it."""
        ...

    def file_read(self, path: str) -> str:
        """The text of ``path`` in the guest."""
        ...


def not_answering(vmid: int, exc: NixmoxError) -> AgentError:
    """The error a failed ping raises, whichever way the agent was asked."""
    return AgentError(f"the guest agent of {vmid} does not answer: {exc}")


def program(argv: Sequence[str]) -> str:
    """The program ``argv`` starts; an empty argv is the caller's mistake."""
    if not argv:
        raise ValueError("exec needs a command")
    return argv[0]


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
) -> CommandResult:
    """The first ``exited`` exec-status answer as a :class:`CommandResult`; ``decode``
    turns the output fields into text (PVE has decoded them already, the agent
    itself sends base64). Killed by a signal: 128 + the signal, as a shell says.
    The guest writes that output: it comes back without terminal escapes or control
    characters (:func:`~nixmox.core.text.printable`)."""
    code = status.get("exitcode")
    if code is None:
        signal = str(status.get("signal", ""))
        code = 128 + int(signal) if signal.isdigit() else 255
    return CommandResult(
        int(str(code)),
        printable(decode(status.get("out-data"))),
        printable(decode(status.get("err-data"))),
        truncated=bool(status.get("out-truncated") or status.get("err-truncated")),
    )
