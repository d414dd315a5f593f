"""Serving a Lab: in a thread of the test process, or as a separate ``python -m tests.lab``.

The in-process server follows fakepve's own pytest plugin (``_Serving``): the
lab runs on a private event loop in a daemon thread, so tests stay plain
synchronous code and need no pytest-asyncio.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from fakepve import settle
from fakepve.certs import make_cert

from .inventory import REPO_ROOT
from .server import Lab

# The token nixmox uses against the lab: root@pam's, so raw hostpci and every other privilege work.
TOKEN_ID = "root@pam!nixmox"
START_TIMEOUT = 30.0
READY_LINE = "# lab ready"
ENV_KEYS = ("NIXMOX_PVE_URL", "NIXMOX_PVE_TOKEN_ID", "NIXMOX_PVE_TOKEN", "NIXMOX_PVE_CA_FILE")

T = TypeVar("T")


def lab_env(url: str, token_id: str, token: str, ca_file: str) -> dict[str, str]:
    """The NIXMOX_PVE_* variables that point nixmox at a lab."""
    return dict(zip(ENV_KEYS, (url, token_id, token, ca_file), strict=True))


def exports(env: dict[str, str]) -> str:
    """The variables as POSIX shell export lines (quoted: the token id holds a `!`)."""
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items())


def make_pki(directory: str | Path, host: str) -> tuple[str, str, str]:
    """A certificate for host (and localhost, 127.0.0.1) in directory: (ca file, cert, key).

    fakepve's self-signed certificate is its own CA, so the CA file is the
    certificate. Clients using requests must pass ``verify=CA`` on each
    request: a ``Session.verify`` loses to ``REQUESTS_CA_BUNDLE`` when that is
    set (psf/requests#3829), as it is on this machine.
    """
    cert, key, _der = make_cert(str(directory), name="lab", hosts=(host,))
    return cert, cert, key


@dataclass
class RunningLab:
    """A Lab being served in this process, and how to reach it."""

    pve: Lab
    ca_file: str
    token_id: str
    token: str
    _loop: asyncio.AbstractEventLoop = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def url(self) -> str:
        """https://host:port of the lab."""
        url: str = self.pve.url
        return url

    @property
    def env(self) -> dict[str, str]:
        """NIXMOX_PVE_URL, _TOKEN_ID, _TOKEN and _CA_FILE for this lab."""
        return lab_env(self.url, self.token_id, self.token, self.ca_file)

    @property
    def root_env(self) -> dict[str, str]:
        """A root@pam password login to this lab (what root-only keys such as raw hostpci and
        affinity need: no API token passes PVE's root checks)."""
        return {
            "NIXMOX_PVE_URL": self.url,
            "NIXMOX_PVE_USER": self.pve.user,
            "NIXMOX_PVE_PASSWORD": self.pve.password,
            "NIXMOX_PVE_CA_FILE": self.ca_file,
        }

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the lab's loop (e.g. ``pve.hold_config_lock(...)``); its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(START_TIMEOUT)

    def stop(self) -> None:
        """Let running tasks settle, stop listening and end the loop's thread."""
        try:
            self.call(settle())
            self.call(self.pve.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(START_TIMEOUT)
            if not self._thread.is_alive():
                self._loop.close()


def serve_in_thread(
    pve: Lab,
    pki: tuple[str, str, str],
    token: str | None = None,
    token_id: str = TOKEN_ID,
) -> RunningLab:
    """Start serving pve (already configured) on a private loop in a daemon thread.

    pki is make_pki()'s (ca file, certificate file, key file).
    """
    ca_file, certfile, keyfile = pki
    token = token or secrets.token_hex(16)
    pve.apitokens[token_id] = token
    loop = asyncio.new_event_loop()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()

    thread = threading.Thread(target=run, name=f"lab-{id(pve)}", daemon=True)
    thread.start()
    running = RunningLab(pve, ca_file, token_id, token, loop, thread)
    try:
        running.call(pve.start(certfile, keyfile))
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(START_TIMEOUT)
        raise
    return running


# ------------------------------------------------------------- subprocess


@dataclass
class LabProcess:
    """A standalone lab (``python -m tests.lab``) and what it printed."""

    process: subprocess.Popen[str]
    env: dict[str, str]
    output: list[str]


def _read_until_ready(proc: subprocess.Popen[str], timeout: float) -> list[str]:
    """The stdout lines up to and including READY_LINE; fails when the process dies or is slow."""
    lines: list[str] = []
    done = threading.Event()

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.strip() == READY_LINE:
                done.set()
                return
        done.set()

    # A thread, because a blocking readline has no timeout of its own.
    threading.Thread(target=reader, name="lab-stdout", daemon=True).start()
    if not done.wait(timeout) or not lines or lines[-1] != READY_LINE:
        raise RuntimeError(f"the lab did not get ready in {timeout}s; it printed: {lines!r}")
    return lines


def parse_exports(lines: list[str]) -> dict[str, str]:
    """The variables of `export NAME=VALUE` lines (shell-quoted values)."""
    env = {}
    for line in lines:
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, _, value = words[1].partition("=")
            env[key] = value
    return env


@contextmanager
def lab_process(
    directory: str | Path,
    host: str = "127.0.0.1",
    guests: bool = False,
    timeout: float = START_TIMEOUT,
) -> Iterator[LabProcess]:
    """Run ``python -m tests.lab`` until the block ends, then SIGTERM it and wait for it."""
    cmd = [
        sys.executable,
        "-m",
        "tests.lab",
        "--host",
        host,
        "--port",
        "0",
        "--dir",
        str(directory),
    ]
    if guests:
        cmd.append("--guests")
    proc = subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        lines = _read_until_ready(proc, timeout)
        yield LabProcess(proc, parse_exports(lines), lines)
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen[str], timeout: float = 10.0) -> int:
    """SIGTERM, then wait; SIGKILL only if it does not stop in time (and say so)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"the lab (pid {proc.pid}) ignored SIGTERM for {timeout}s") from None
    if proc.stdout:
        proc.stdout.close()
    return proc.returncode


def wait_closed(host: str, port: int, timeout: float = 5.0) -> bool:
    """True once nothing accepts connections on host:port any more."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                pass
        except OSError:
            return True
        time.sleep(0.05)
    return False
