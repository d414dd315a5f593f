"""nixmox's guest-agent clients against the real qemu-ga: the direct socket client
(:mod:`nixmox.adapters.guest_agent.via_socket`) and the API client (:class:`ApiAgent`)
through the lab, which
forwards the agent API to the same qemu-ga with PVE's wrapping."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from nixmox.adapters.guest_agent import AgentError, AgentTimeout
from nixmox.adapters.guest_agent.via_api import ApiAgent
from nixmox.adapters.guest_agent.via_socket import CHUNK, SocketAgent, socket_dir
from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.settings import connection
from nixmox.core.results import CommandResult
from nixmox.inventory.model import ProxmoxSettings
from tests.lab.serving import RunningLab
from tests.peers.qga import QemuGuestAgent

pytestmark = pytest.mark.peer

VMID = 102


@pytest.fixture
def agent(qga: QemuGuestAgent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SocketAgent:
    """The direct client, finding qemu-ga's socket as VMID.qga under NIXMOX_QGA_DIR."""
    (tmp_path / f"{VMID}.qga").symlink_to(qga.socket_path)
    monkeypatch.setenv("NIXMOX_QGA_DIR", str(tmp_path))
    assert socket_dir() == tmp_path
    return SocketAgent(VMID, poll=0.05)


def test_ping_and_exec_with_output_exit_code_and_input(agent: SocketAgent) -> None:
    agent.ping()
    result = agent.exec(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert not result.ok
    assert agent.exec(["/bin/cat"], input_data="fed through input-data\n").stdout == (
        "fed through input-data\n"
    )


def test_each_call_resyncs_so_calls_follow_each_other(agent: SocketAgent) -> None:
    # One connection at a time: every call opens, syncs and closes its own.
    for n in range(5):
        assert agent.exec(["/bin/echo", str(n)]).stdout == f"{n}\n"
        agent.ping()


def test_another_client_gets_through_while_an_exec_runs(agent: SocketAgent) -> None:
    # Issue 24 item 9: qemu-ga serves one client; Proxmox's own agent calls
    # (vzdump's fs-freeze, a shutdown by agent) must not wait for a long exec.
    agent.poll = 0.3
    done: list[CommandResult] = []
    worker = threading.Thread(target=lambda: done.append(agent.exec(["/bin/sleep", "2"])))
    worker.start()
    try:
        time.sleep(0.2)
        other = SocketAgent(VMID, timeout=1.0)
        answered = 0
        while worker.is_alive() and answered < 3:
            other.ping()  # AgentError after 1 s if the exec held the socket
            answered += 1
            time.sleep(0.1)
    finally:
        worker.join()
    assert answered == 3
    assert done and done[0].returncode == 0


def test_a_command_killed_by_a_signal_reports_128_plus_signal(agent: SocketAgent) -> None:
    assert agent.exec(["/bin/sh", "-c", "kill -TERM $$"]).returncode == 128 + 15


def test_exec_that_outlives_its_timeout_is_a_typed_error(agent: SocketAgent) -> None:
    with pytest.raises(AgentTimeout, match="still running"):
        agent.exec(["/bin/sleep", "2"], timeout=0.2)
    agent.ping()  # the agent is still fine


def test_file_write_and_read_round_trip_in_chunks(agent: SocketAgent, tmp_path: Path) -> None:
    target = tmp_path / "script.ps1"
    text = "".join(f"Write-Output 'line {n}' # ünïcode\n" for n in range(4000))
    assert len(text.encode()) > 2 * CHUNK
    agent.file_write(str(target), text)
    assert target.read_text(encoding="utf-8") == text
    assert agent.file_read(str(target)) == text
    agent.file_write(str(target), "")
    assert agent.file_read(str(target)) == ""


def test_agent_errors_are_typed_with_the_agents_words(agent: SocketAgent, tmp_path: Path) -> None:
    with pytest.raises(AgentError, match=r"No such file|Failed to open"):
        agent.file_read(str(tmp_path / "missing"))
    with pytest.raises(AgentError):
        agent.exec(["/nonexistent/program"])
    agent.ping()


def test_a_missing_socket_says_which(tmp_path: Path) -> None:
    missing = SocketAgent(4242, directory=tmp_path)
    assert not missing.exists()
    with pytest.raises(AgentError, match=r"4242\.qga"):
        missing.ping()


def test_the_api_agent_against_real_qemu_ga_through_the_lab(
    lab: RunningLab, qga: QemuGuestAgent, tmp_path: Path
) -> None:
    lab.pve.add_declared_guests()
    vm = lab.pve.find("pve1", VMID)
    vm.status = "running"
    lab.pve.forward_agent(VMID, qga.socket_path)
    agent = ApiAgent(Proxmox(connection(ProxmoxSettings(), lab.env)), "pve1", VMID, poll=0.05)
    agent.ping()
    result = agent.exec(["/bin/sh", "-c", "printf 'caf\\303\\251'; echo oops >&2; exit 2"])
    assert (result.returncode, result.stdout, result.stderr) == (2, "café", "oops\n")
    assert agent.exec(["/bin/cat"], input_data="through PVE\n").stdout == "through PVE\n"
    target = tmp_path / "from-api.txt"
    agent.file_write(str(target), "written through the API\n")
    assert target.read_text() == "written through the API\n"
    assert agent.file_read(str(target)) == "written through the API\n"
    with pytest.raises(AgentError, match="Agent error"):
        agent.file_read(str(tmp_path / "missing"))
    # The lab still records what was asked, as fakepve does.
    assert [c for c, _ in vm.agent_requests][:2] == ["ping", "exec"]
