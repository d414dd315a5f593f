"""The one runner: local commands, dry-run, timeouts, typed errors, masking."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from nixmox.adapters.runner import Remote, Runner, split_remote
from nixmox.core import log
from nixmox.core.errors import CommandError, CommandNotFound, CommandTimeout, ConfigError
from nixmox.core.log import register_secret
from tests.peers.sshd import Sshd, free_port


def test_runs_and_captures_output() -> None:
    result = Runner().run(["sh", "-c", "echo out; echo err >&2"], changes=False)
    assert result.ok and result.stdout == "out\n" and result.stderr == "err\n"


def test_failure_keeps_stderr_and_exit_code() -> None:
    with pytest.raises(CommandError) as info:
        Runner().run(["sh", "-c", "echo 'cannot open dataset' >&2; exit 3"])
    assert info.value.returncode == 3
    assert "cannot open dataset" in info.value.stderr
    assert "cannot open dataset" in str(info.value)


def test_unchecked_failure_returns_the_result() -> None:
    result = Runner().run(["sh", "-c", "exit 4"], check=False)
    assert result.returncode == 4 and not result.ok


def test_missing_program_is_a_typed_error() -> None:
    with pytest.raises(CommandNotFound, match="no-such-program-xyz"):
        Runner().run(["no-such-program-xyz", "--flag"])


def test_timeout_stops_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match="stopped after"):
        Runner().run(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], timeout=0.5)
    assert time.monotonic() - started < 10
    child = int(pidfile.read_text())
    # The grandchild (sleep) was in the command's group and is gone too.
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"child {child} still alive after the timeout")


def test_dry_run_skips_changes_but_runs_reads(tmp_path: Path) -> None:
    marker = tmp_path / "touched"
    runner = Runner(dry_run=True)
    skipped = runner.run(["touch", str(marker)])
    assert skipped.skipped and skipped.ok and not marker.exists()
    read = runner.run(["echo", "listing"], changes=False)
    assert not read.skipped and read.stdout == "listing\n"


def test_env_is_passed_to_local_commands() -> None:
    result = Runner().run(["sh", "-c", "echo $NIXMOX_TEST_VAR"], env={"NIXMOX_TEST_VAR": "v1"})
    assert result.stdout == "v1\n"


def test_secrets_are_masked_in_logs_and_errors(capfd: pytest.CaptureFixture[str]) -> None:
    secret = "s3cr3t-token-value-1234"
    register_secret(secret)
    log.setup(1)  # -v: every command is logged to stderr
    with pytest.raises(CommandError) as info:
        Runner().run(["sh", "-c", f"echo 'bad token {secret}' >&2; exit 1", secret])
    assert secret not in str(info.value) and secret not in info.value.stderr
    logged = capfd.readouterr().err
    assert "$ sh -c" in logged and secret not in logged and "***" in logged


def test_url_passwords_are_masked() -> None:
    assert log.mask("json://user:hunter2@127.0.0.1/x") == "json://user:***@127.0.0.1/x"


def test_remote_wraps_argv_for_ssh_with_quoting() -> None:
    remote = Remote("root@pve1.home.arpa", ("-F", "/tmp/cfg"))
    argv = remote.wrap(["zfs", "list", "-H", "a b"], {"LC_ALL": "C"})
    assert argv[:3] == ["ssh", "-o", "BatchMode=yes"]
    assert argv[3:7] == ["-F", "/tmp/cfg", "--", "root@pve1.home.arpa"]
    assert argv[-1] == "env LC_ALL=C zfs list -H 'a b'"


@pytest.mark.parametrize(
    ("command", "remote", "program"),
    [
        (["zfs"], None, ["zfs"]),
        (["sudo", "zfs"], None, ["sudo", "zfs"]),
        (["ssh", "root@pve1", "zfs"], Remote("root@pve1"), ["zfs"]),
        (
            ["/usr/bin/ssh", "-p", "2222", "-oBatchMode=yes", "-4", "pve1", "sudo", "zfs"],
            Remote("pve1", ("-p", "2222", "-oBatchMode=yes", "-4")),
            ["sudo", "zfs"],
        ),
        (["ssh", "-4F", "/c", "--", "pve1", "zpool"], Remote("pve1", ("-4F", "/c")), ["zpool"]),
    ],
)
def test_a_configured_ssh_prefix_is_a_remote_and_a_program(
    command: list[str], remote: Remote | None, program: list[str]
) -> None:
    assert split_remote(command) == (remote, program)


@pytest.mark.parametrize("command", [["ssh", "pve1"], ["ssh", "-p", "22"], ["ssh"]])
def test_an_ssh_prefix_without_a_program_is_a_config_error(command: list[str]) -> None:
    with pytest.raises(ConfigError, match="destination and the program"):
        split_remote(command)


def test_a_bound_runner_keeps_dry_run_and_history() -> None:
    runner = Runner(dry_run=True)
    there = runner.on(Remote("root@pve1"))
    skipped = there.run(["zfs", "snapshot", "a@b"])
    assert skipped.skipped and runner.history == [skipped] and runner.remote is None
    assert there.on(None).remote is None and there.dry_run


# -- over SSH, against a real sshd on loopback ----------------------------------


def remote_for(sshd: Sshd) -> Remote:
    return Remote(sshd.host, ("-F", str(sshd.ssh_config)))


def test_remote_command_runs_with_quoting_and_env(sshd: Sshd) -> None:
    result = Runner().run(
        ["sh", "-c", 'printf "%s|%s\\n" "$1" "$NIXMOX_T"', "x", "two words; $(id)"],
        remote=remote_for(sshd),
        env={"NIXMOX_T": "v 1"},
        changes=False,
    )
    assert result.stdout == "two words; $(id)|v 1\n"


def test_remote_failure_keeps_exit_code_and_stderr(sshd: Sshd) -> None:
    with pytest.raises(CommandError) as info:
        Runner().run(["sh", "-c", "echo 'pool busy' >&2; exit 7"], remote=remote_for(sshd))
    assert info.value.returncode == 7 and "pool busy" in info.value.stderr


def test_unreachable_host_is_a_command_error(sshd: Sshd, tmp_path: Path) -> None:
    config = tmp_path / "cfg"
    config.write_text(
        sshd.ssh_config.read_text().replace(f"Port {sshd.port}", f"Port {free_port()}")
    )
    with pytest.raises(CommandError) as info:
        Runner().run(["true"], remote=Remote(sshd.host, ("-F", str(config))), timeout=30)
    assert info.value.returncode == 255 and "ssh nixmox-test" in str(info.value)


def test_remote_dry_run_reaches_nothing(sshd: Sshd, tmp_path: Path) -> None:
    marker = tmp_path / "remote-marker"
    result = Runner(dry_run=True).run(["touch", str(marker)], remote=remote_for(sshd))
    assert result.skipped and not marker.exists()
    # Reads still run under --dry-run, remotely too.
    read = Runner(dry_run=True).run(["echo", "listed"], remote=remote_for(sshd), changes=False)
    assert read.stdout == "listed\n"


def test_a_pipe_whose_sink_stops_reading_is_stopped_at_the_stall_bound(tmp_path: Path) -> None:
    # A receiving end that hangs while alive (a stuck `zfs receive` or ssh) takes no
    # more bytes once the pipe's buffer is full: the copy gives up, both ends go.
    pidfile = tmp_path / "sink.pid"
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match="stopped after 1 s without a byte moving"):
        Runner().pipe(
            ["sh", "-c", "exec yes nixmox"],
            ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"],
            stall=1.0,
        )
    assert time.monotonic() - started < 10
    with pytest.raises(ProcessLookupError):
        os.kill(int(pidfile.read_text()), 0)


def test_a_pipe_moves_every_byte_through_a_slow_reader(tmp_path: Path) -> None:
    out = tmp_path / "out"
    piped = Runner().pipe(
        ["head", "-c", "3000000", "/dev/urandom"],
        ["sh", "-c", f"sleep 0.5; cat > {out}"],  # reads only after the buffer filled
        stall=5.0,
    )
    assert piped.bytes == 3_000_000 and out.stat().st_size == 3_000_000
