"""The throwaway sshd behaves like a real remote host for the system ssh client."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.peers.sshd import Sshd

pytestmark = pytest.mark.peer


def test_plain_ssh_with_generated_config(sshd: Sshd) -> None:
    # Exactly what nixmox's remote runner does: the system ssh, -F, alias.
    result = subprocess.run(
        ["ssh", "-F", str(sshd.ssh_config), sshd.host, "echo", "ok"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"


def test_remote_exit_code_and_stderr_pass_through(sshd: Sshd) -> None:
    result = sshd.ssh("echo out; echo oops >&2; exit 7")
    assert result.returncode == 7
    assert result.stdout == "out\n"
    assert result.stderr == "oops\n"


def test_runs_as_root_on_this_machine(sshd: Sshd) -> None:
    result = sshd.ssh("id -u; hostname")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", os.uname().nodename]


def test_unknown_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    # StrictHostKeyChecking is real: with an empty known_hosts the client
    # must refuse (exit 255) rather than prompt or trust on first use.
    config = sshd.ssh_config.read_text().replace(str(sshd.known_hosts), "/dev/null")
    path = tmp_path / "ssh_config"
    path.write_text(config)
    result = subprocess.run(
        ["ssh", "-F", str(path), sshd.host, "true"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 255
    assert "Host key verification failed" in result.stderr


def test_server_leaves_no_process_behind(sshd: Sshd) -> None:
    # The session server proved the prerequisites; this one is our own.
    with Sshd(sshd=sshd.sshd, ssh=sshd.ssh_bin, ssh_keygen=sshd.ssh_keygen) as own:
        pid = own.pid
        tmp = own.tmp
        assert own.port != sshd.port
        assert own.ssh("true").returncode == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert tmp is not None
    assert not tmp.exists()
