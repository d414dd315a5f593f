"""A real QEMU guest agent (``qemu-ga``) on a unix socket, and a small client.

On this machine the agent runs as root on the host itself, so commands that
would power off, freeze or reconfigure the machine are always blocked
(``BLOCKED``); callers can block more but never fewer.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from nixmox.adapters.guest_agent.via_socket import QgaConnection
from tests.peers._proc import Daemon, die_with_parent, wait_until

BLOCKED: tuple[str, ...] = (
    "guest-shutdown",
    "guest-suspend-disk",
    "guest-suspend-ram",
    "guest-suspend-hybrid",
    "guest-set-time",
    "guest-set-user-password",
    "guest-set-vcpus",
    "guest-set-memory-blocks",
    "guest-fsfreeze-freeze",
    "guest-fsfreeze-freeze-list",
    "guest-fstrim",
)


class QgaError(Exception):
    """An ``{"error": ...}`` answer from the agent."""

    def __init__(self, command: str, error: dict[str, Any]) -> None:
        self.command = command
        self.error_class: str = str(error.get("class", ""))
        self.desc: str = str(error.get("desc", ""))
        super().__init__(f"{command}: {self.error_class}: {self.desc}")


class QgaClient:
    """Newline-delimited JSON client for one agent connection.

    The agent serves one connection at a time: close the client (or use it as
    a context manager) before opening another.
    """

    def __init__(self, path: Path | str, *, timeout: float = 10.0) -> None:
        self.timeout = timeout
        # The wire (connect, resync, lines, a close that leaves nothing unread so
        # qemu-ga 7.2 does not exit on ECONNRESET) is nixmox's own agent connection.
        self._conn = QgaConnection(Path(path), timeout, "qemu-ga")
        try:
            self.sync()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the connection without killing the agent (see QgaConnection.close)."""
        self._conn.close()

    def __enter__(self) -> QgaClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- wire --------------------------------------------------------------

    def _send(self, message: dict[str, Any], prefix: bytes = b"") -> None:
        self._conn.send(message, prefix)

    def sync(self) -> None:
        """Resynchronise the stream, discarding any stale answers."""
        self._conn.sync()

    def call(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Run one agent command; return its ``return`` value or raise QgaError."""
        message: dict[str, Any] = {"execute": command}
        if arguments is not None:
            message["arguments"] = arguments
        self._send(message)
        answer = json.loads(self._conn.read_line(time.monotonic() + self.timeout))
        if "error" in answer:
            raise QgaError(command, answer["error"])
        return answer.get("return")

    def exec(
        self, argv: Sequence[str], *, timeout: float = 30.0, poll: float = 0.02
    ) -> tuple[int, str, str]:
        """Run ``argv`` through guest-exec; return (exit code, stdout, stderr).

        A process killed by a signal reports ``-signal``, like ``subprocess``.
        """
        if not argv:
            raise ValueError("exec() needs a command")
        started = self.call(
            "guest-exec", {"path": argv[0], "arg": list(argv[1:]), "capture-output": True}
        )
        pid = started["pid"]
        deadline = time.monotonic() + timeout
        while True:
            # The agent forgets the pid after the first "exited" answer, so
            # this one answer carries everything we will ever get.
            status = self.call("guest-exec-status", {"pid": pid})
            if status.get("exited"):
                break
            if time.monotonic() >= deadline:
                raise TimeoutError(f"guest-exec {argv[0]} still running after {timeout:g}s")
            time.sleep(poll)
        code = status["exitcode"] if "exitcode" in status else -int(status.get("signal", 0))
        return code, _b64(status.get("out-data")), _b64(status.get("err-data"))


def _b64(data: str | None) -> str:
    return base64.b64decode(data).decode(errors="replace") if data else ""


class QemuGuestAgent(Daemon):
    """A ``qemu-ga`` process listening on a unix socket in a temp dir.

    Context manager (or ``start()``/``stop()``). After ``start()``:
    ``socket_path``, ``pid``, ``log_path``, ``client()`` for a synced
    ``QgaClient``.
    """

    name = "qemu-ga"
    tmp_prefix = "qga"

    def __init__(
        self,
        *,
        qemu_ga: str = "/usr/sbin/qemu-ga",
        extra_blocked: Sequence[str] = (),
        start_timeout: float = 10.0,
    ) -> None:
        super().__init__()
        self.qemu_ga = qemu_ga
        self.blocked: tuple[str, ...] = (*BLOCKED, *extra_blocked)
        self.start_timeout = start_timeout

    @property
    def socket_path(self) -> Path:
        """The agent's listening socket."""
        return self._tmp / "qga.sock"

    @property
    def log_path(self) -> Path:
        """The agent's log file (``-l``)."""
        return self._tmp / "qga.log"

    def _start(self) -> None:
        """Start the agent and wait until its socket accepts connections."""
        # qemu-ga does not create its state dir; without it it exits at once.
        (self._tmp / "state").mkdir()
        argv = [
            self.qemu_ga,
            "-m", "unix-listen",
            "-p", str(self.socket_path),
            "-t", str(self._tmp / "state"),
            "-l", str(self.log_path),
            "-b", ",".join(self.blocked),
        ]  # fmt: skip
        with (self._tmp / "stderr.log").open("wb") as stderr:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=self._tmp,
                preexec_fn=die_with_parent,
            )
        wait_until(
            self._accepts,
            timeout=self.start_timeout,
            what="qemu-ga",
            proc=self.proc,
            log=self.log_path,
        )

    def _accepts(self) -> bool:
        # The socket file appears at bind(), a moment before listen(), so
        # only a real connect proves readiness. Closing it without having
        # sent anything leaves no unread answer behind, which is safe.
        if not self.socket_path.is_socket():
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            try:
                probe.connect(str(self.socket_path))
            except OSError:
                return False
        return True

    def client(self, timeout: float = 10.0) -> QgaClient:
        """A connected, synced client (close it before opening another)."""
        return QgaClient(self.socket_path, timeout=timeout)
