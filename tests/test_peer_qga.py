"""The real qemu-ga speaks the protocol nixmox's agent calls assume."""

from __future__ import annotations

import os
import time

import pytest

from tests.peers.qga import BLOCKED, QemuGuestAgent, QgaClient, QgaError

pytestmark = pytest.mark.peer


def test_ping_answers_empty_return(qga_client: QgaClient) -> None:
    assert qga_client.call("guest-ping") == {}


def test_info_lists_commands_and_blocked_ones_disabled(qga_client: QgaClient) -> None:
    info = qga_client.call("guest-info")
    commands = {c["name"]: c for c in info["supported_commands"]}
    assert info["version"]
    assert commands["guest-exec"]["enabled"] is True
    assert commands["guest-shutdown"]["enabled"] is False
    # Every command on the safety list is disabled, not just one.
    assert [name for name in BLOCKED if commands.get(name, {}).get("enabled")] == []


def test_exec_returns_exit_code_and_output(qga_client: QgaClient) -> None:
    assert qga_client.exec(["/bin/echo", "hello"]) == (0, "hello\n", "")


def test_exec_passes_failure_and_stderr_through(qga_client: QgaClient) -> None:
    code, out, err = qga_client.exec(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (code, out, err) == (3, "out\n", "err\n")


def test_exec_status_forgets_pid_after_exit(qga_client: QgaClient) -> None:
    pid = qga_client.call("guest-exec", {"path": "/bin/true", "capture-output": True})["pid"]
    for _ in range(500):
        if qga_client.call("guest-exec-status", {"pid": pid})["exited"]:
            break
    else:
        pytest.fail("guest-exec of /bin/true never exited")
    with pytest.raises(QgaError) as err:
        qga_client.call("guest-exec-status", {"pid": pid})
    assert "pid" in err.value.desc


def test_blocked_command_is_refused(qga_client: QgaClient) -> None:
    with pytest.raises(QgaError) as err:
        qga_client.call("guest-shutdown", {"mode": "powerdown"})
    assert err.value.error_class == "CommandNotFound"
    assert "disabled" in err.value.desc
    # The connection is still usable after an error answer.
    assert qga_client.call("guest-ping") == {}


def test_unknown_command_is_an_error(qga_client: QgaClient) -> None:
    with pytest.raises(QgaError) as err:
        qga_client.call("guest-no-such-command")
    assert err.value.error_class == "CommandNotFound"


def test_closing_on_an_unread_answer_keeps_the_agent_alive(qga: QemuGuestAgent) -> None:
    # qemu-ga 7.2 exits when a client closes with an answer still unread
    # (ECONNRESET on its side); QgaClient.close() drains to avoid that.
    client = qga.client()
    client._send({"execute": "guest-info"})  # answer deliberately left unread
    time.sleep(0.2)  # let the answer reach our receive queue
    client.close()
    time.sleep(0.2)  # give a dying agent time to die
    assert qga.proc is not None
    assert qga.proc.poll() is None
    with qga.client() as again:
        assert again.call("guest-ping") == {}


def test_agent_leaves_no_process_behind(qga: QemuGuestAgent) -> None:
    # The fixture already checked prerequisites; this one runs its own agent.
    with QemuGuestAgent(qemu_ga=qga.qemu_ga) as agent:
        pid = agent.pid
        tmp = agent.tmp
        with agent.client() as client:
            assert client.exec(["/bin/echo", "x"])[0] == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert tmp is not None
    assert not tmp.exists()
