"""The QEMU guest agent through the host's own socket, without the Proxmox API.

On a Proxmox host every VM with ``agent: 1`` has its agent's channel at
``/var/run/qemu-server/VMID.qga`` (the directory can be moved with
``NIXMOX_QGA_DIR``, which the tests do). :class:`SocketAgent` speaks the agent's
protocol there directly: newline-delimited JSON, a resynchronisation with
``0xff`` and ``guest-sync-delimited`` on each connection (a previous client may
have left answers unread), ``guest-exec`` with base64 ``input-data`` and
``guest-exec-status`` polled until the first ``exited`` answer (the agent
forgets the pid after it, so that answer carries everything), and the file
commands with base64 chunks.

The agent serves one connection at a time, so each method opens its own
connection and closes it before returning, and an exec's status polls each
open their own: nothing is held between calls or polls.
Closing leaves no answer unread (half-close, then drain): some qemu-ga
releases exit when a client resets the connection under unread data.

The guest is not trusted to be well behaved: every answer is read against a
deadline and a byte cap (:data:`MAX_ANSWER`), each connection has an overall
deadline (the call's own timeout plus :attr:`SocketAgent.budget`), a file read
stops at :data:`MAX_FILE`, and the drain on closing gives up after
:data:`DRAIN_BYTES` or :data:`DRAIN_SECONDS`. A guest that keeps sending can
delay nixmox by those bounds, never hold it (and its lock) for good.

It is a :class:`~nixmox.adapters.guest_agent.GuestAgent` like
:class:`~nixmox.adapters.guest_agent.via_api.ApiAgent`, for runs on the host that have no API
token (see :mod:`nixmox.windows.update_run` for when it is picked).
"""

from __future__ import annotations

import base64
import json
import os
import random
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nixmox.adapters.guest_agent import (
    AgentError,
    exec_result,
    not_answering,
    program,
    wait_exited,
)
from nixmox.core.clock import SYSTEM_CLOCK, Clock
from nixmox.core.results import CommandResult
from nixmox.core.text import printable

DEFAULT_DIR = "/var/run/qemu-server"
#: Raw bytes per guest-file-write call (base64 makes them a third larger on the wire).
CHUNK = 48 * 1024
#: The most one answer may hold: qemu-ga caps a command's captured output at 16 MiB,
#: which base64 makes a third larger.
MAX_ANSWER = 24 * 1024 * 1024
#: The largest guest file nixmox reads (its reads are manifests and small text files).
MAX_FILE = 16 * 1024 * 1024
#: What closing reads at most before it hangs up anyway, in bytes and seconds.
DRAIN_BYTES = 1024 * 1024
DRAIN_SECONDS = 2.0


def socket_dir(environ: dict[str, str] | None = None) -> Path:
    """Where the host keeps the agents' sockets: ``$NIXMOX_QGA_DIR`` or ``/var/run/qemu-server``."""
    env = os.environ if environ is None else environ
    return Path(env.get("NIXMOX_QGA_DIR") or DEFAULT_DIR)


def socket_path(vmid: int, directory: Path | None = None) -> Path:
    """The agent socket of VM ``vmid``."""
    return (directory or socket_dir()) / f"{vmid}.qga"


class QgaConnection:
    """One connection to an agent socket, newline-delimited JSON (call :meth:`sync` first).

    ``budget``: seconds the whole connection may last, whatever the guest sends;
    ``max_answer``: the most bytes one answer (one line) may hold.
    """

    def __init__(
        self,
        path: Path,
        timeout: float,
        what: str,
        *,
        budget: float | None = None,
        max_answer: int = MAX_ANSWER,
    ) -> None:
        self.what = what
        self.timeout = timeout
        self.max_answer = max_answer
        self._until = time.monotonic() + (budget if budget is not None else 10 * timeout)
        self._buf = bytearray()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(path))
        except OSError as exc:
            self._sock.close()
            raise AgentError(f"{what}: cannot connect to {path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        """Half-close, read what the agent still sends (bounded), then hang up."""
        try:
            self._sock.shutdown(socket.SHUT_WR)
            until = time.monotonic() + DRAIN_SECONDS
            drained = 0
            while drained < DRAIN_BYTES:
                left = until - time.monotonic()
                if left <= 0:
                    break
                self._sock.settimeout(left)
                chunk = self._sock.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass  # gone or timed out: nothing more to protect
        finally:
            self._sock.close()

    def send(self, message: dict[str, Any], prefix: bytes = b"") -> None:
        try:
            self._sock.sendall(prefix + json.dumps(message).encode() + b"\n")
        except OSError as exc:
            raise AgentError(f"{self.what}: the agent connection broke: {exc}") from None

    def read_line(self, deadline: float) -> bytes:
        """The next line, by ``deadline`` (and the connection's budget), of at most
        :attr:`max_answer` bytes."""
        until = min(deadline, self._until)
        searched = 0  # the buffer holds no newline before this offset
        while (end := self._buf.find(b"\n", searched)) < 0:
            searched = len(self._buf)
            if searched > self.max_answer:
                raise AgentError(
                    f"{self.what}: the guest agent sent more than {self.max_answer} bytes "
                    "without ending its answer"
                )
            left = until - time.monotonic()
            if left <= 0:
                if until < deadline:
                    raise AgentError(
                        f"{self.what}: the guest agent kept the connection past its "
                        "overall deadline"
                    )
                raise AgentError(
                    f"{self.what}: the guest agent did not answer in {self.timeout:g} s"
                )
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(min(1 << 20, self.max_answer + 1 - searched))
            except TimeoutError:
                continue
            except OSError as exc:
                raise AgentError(f"{self.what}: the agent connection broke: {exc}") from None
            if not chunk:
                raise AgentError(f"{self.what}: the guest agent closed the connection")
            self._buf += chunk
        if end > self.max_answer:
            raise AgentError(
                f"{self.what}: the guest agent sent an answer of more than {self.max_answer} bytes"
            )
        line = bytes(self._buf[:end])
        del self._buf[: end + 1]
        return line

    def sync(self) -> None:
        """Discard whatever an earlier client left unread.

        ``0xff`` resets the agent's parser; the answer to ``guest-sync-delimited``
        comes behind a ``0xff`` marker and echoes our id, so every line before
        it is stale (including the parse error the reset itself may cause).
        """
        sync_id = random.randrange(1, 2**31)
        self.send({"execute": "guest-sync-delimited", "arguments": {"id": sync_id}}, b"\xff")
        deadline = time.monotonic() + self.timeout
        stale = 0
        while True:
            line = self.read_line(deadline)
            stale += len(line) + 1
            if stale > self.max_answer:
                raise AgentError(
                    f"{self.what}: the guest agent sent more than {self.max_answer} bytes "
                    "before answering the resynchronisation"
                )
            marker = line.rfind(b"\xff")
            if marker < 0:
                continue
            try:
                answer = json.loads(line[marker + 1 :])
            except ValueError:
                continue
            if isinstance(answer, dict) and answer.get("return") == sync_id:
                return

    def call(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Run one agent command; its ``return`` value, or AgentError with the agent's words."""
        message: dict[str, Any] = {"execute": command}
        if arguments is not None:
            message["arguments"] = arguments
        self.send(message)
        try:
            answer = json.loads(self.read_line(time.monotonic() + self.timeout))
        except ValueError:
            raise AgentError(f"{self.what}: {command}: the agent answered no JSON") from None
        if not isinstance(answer, dict):
            raise AgentError(f"{self.what}: {command}: unexpected answer {answer!r}")
        if "error" in answer:
            error = answer["error"] if isinstance(answer["error"], dict) else {}
            desc = printable(str(error.get("desc", "agent error")))  # the guest's words
            raise AgentError(f"{self.what}: {command}: {desc}")
        return answer.get("return")


@dataclass
class SocketAgent:
    """The agent of VM ``vmid`` through its socket on this host."""

    vmid: int
    directory: Path | None = None
    timeout: float = 10.0  # for one answer
    poll: float = 0.5  # longest pause between two guest-exec-status calls
    clock: Clock = SYSTEM_CLOCK  # for the exec-status polling (socket reads wait for real)
    #: Seconds one call's connection may last beyond a command's own timeout.
    budget: float = 300.0
    max_answer: int = MAX_ANSWER
    max_file: int = MAX_FILE

    @property
    def path(self) -> Path:
        return socket_path(self.vmid, self.directory)

    def exists(self) -> bool:
        """Whether this host has an agent socket for the VM (it runs with ``agent: 1``)."""
        return self.path.is_socket()

    @contextmanager
    def _connect(self, longest: float = 0.0) -> Iterator[QgaConnection]:
        """A synced connection that lasts at most ``longest`` + :attr:`budget` seconds."""
        conn = QgaConnection(
            self.path,
            self.timeout,
            f"VM {self.vmid}",
            budget=longest + self.budget,
            max_answer=self.max_answer,
        )
        try:
            conn.sync()
            yield conn
        finally:
            conn.close()

    def ping(self) -> None:
        try:
            with self._connect() as conn:
                conn.call("guest-ping")
        except AgentError as exc:
            raise not_answering(self.vmid, exc) from None

    def exec(
        self, argv: Sequence[str], *, input_data: str | None = None, timeout: float = 600.0
    ) -> CommandResult:
        name = program(argv)
        arguments: dict[str, Any] = {
            "path": name,
            "arg": list(argv[1:]),
            "capture-output": True,
        }
        if input_data is not None:
            arguments["input-data"] = base64.b64encode(input_data.encode()).decode()
        with self._connect() as conn:
            pid = int(conn.call("guest-exec", arguments)["pid"])

        def status() -> dict[str, Any]:
            # A connection per poll: the agent serves one client at a time, and
            # Proxmox's own calls (vzdump's fs-freeze, a shutdown by agent) must
            # get through between our polls of a command that runs for hours.
            with self._connect() as conn:
                return dict(conn.call("guest-exec-status", {"pid": pid}))

        found = wait_exited(status, timeout, self.poll, self.clock, f"VM {self.vmid}: {name}")
        return exec_result(found, _decode)

    def file_write(self, path: str, content: str) -> None:
        data = content.encode()
        with self._connect() as conn:
            handle = conn.call("guest-file-open", {"path": path, "mode": "w"})
            try:
                for start in range(0, max(len(data), 1), CHUNK):
                    piece = data[start : start + CHUNK]
                    conn.call(
                        "guest-file-write",
                        {"handle": handle, "buf-b64": base64.b64encode(piece).decode()},
                    )
            finally:
                conn.call("guest-file-close", {"handle": handle})

    def file_read(self, path: str) -> str:
        chunks: list[bytes] = []
        size = 0
        with self._connect() as conn:
            handle = conn.call("guest-file-open", {"path": path, "mode": "r"})
            try:
                while True:
                    got = conn.call("guest-file-read", {"handle": handle, "count": CHUNK})
                    chunk = base64.b64decode(got.get("buf-b64") or "")
                    size += len(chunk)
                    if size > self.max_file:
                        raise AgentError(
                            f"VM {self.vmid}: {path} is larger than {self.max_file} bytes"
                        )
                    chunks.append(chunk)
                    if got.get("eof") or not got.get("count"):
                        break
            finally:
                conn.call("guest-file-close", {"handle": handle})
        # The guest's file: no terminal escapes reach what nixmox prints from it.
        return printable(b"".join(chunks).decode(errors="replace"))


def _decode(data: object) -> str:
    return base64.b64decode(str(data)).decode(errors="replace") if data else ""
