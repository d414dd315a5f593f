"""Hostile inputs, secrets and the state directory (issue 17): each finding reproduced."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import re
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nixmox.adapters.guest_agent import AgentError
from nixmox.adapters.guest_agent.via_socket import DRAIN_SECONDS, MAX_ANSWER, SocketAgent
from nixmox.adapters.journal import Journal, ensure_state_dir
from nixmox.adapters.locks import LockSet, job_claim
from nixmox.adapters.proxmox.settings import Connection, connection
from nixmox.adapters.runner import Runner
from nixmox.cli.main import run
from nixmox.core.errors import CommandError, ConfigError, NixmoxError
from nixmox.core.files import write_atomically
from nixmox.core.log import mask, register_url
from nixmox.core.text import printable
from nixmox.inventory.model import ProxmoxSettings
from nixmox.schedule.install import Layout, install, uninstall
from nixmox.windows.guest_folder import acl_problems, signature_problem
from nixmox.windows.scripts import script_argv
from tests.lab.serving import RunningLab
from tests.observe_support import receiver
from tests.peers.qga import QemuGuestAgent
from tests.windows_exec import (
    PLANTED,
    PLAYER,
    PROGRAMDATA_CHILD,
    PROTECTED,
    ROOT_CHILD,
    VALVE_SIGNED,
    script_call,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "homelab.toml"
ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b[31m"


# -- 3: notification secrets at -vv ----------------------------------------------

SENDER = textwrap.dedent(
    """
    import sys
    from nixmox.core import log
    from nixmox.observe.notify import Message, send
    log.setup(2)
    send(sys.argv[1:], Message("failure", "nixmox backup failed", "body"))
    """
)


def test_notification_urls_leak_no_secret_at_debug_level(tmp_path: Path) -> None:
    secrets = ["s3cr3tPW", "PathToken99", "QueryToken77", "GotifyAppTok", "ntfyPass42"]
    with receiver() as rec, receiver() as gone:
        dead = gone.port  # closed once this block's inner server stops below
    with receiver() as rec:
        urls = [
            f"json://nixmox:s3cr3tPW@127.0.0.1:{rec.port}/hook/PathToken99?token=QueryToken77",
            f"gotify://127.0.0.1:{rec.port}/GotifyAppTok",
            f"ntfy://alerts:ntfyPass42@127.0.0.1:{rec.port}/nixmox-topic",
            f"json://u:s3cr3tPW@127.0.0.1:{dead}/PathToken99",  # refused: warnings logged
        ]
        done = subprocess.run(
            [sys.executable, "-c", SENDER, *urls],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        )
        assert rec.bodies, done.stderr  # really delivered, not just silent
    output = done.stdout + done.stderr
    assert "delivery through" in output  # the dead endpoint was reported
    for secret in secrets:
        assert secret not in output


def test_a_rewritten_service_url_is_masked_piece_by_piece() -> None:
    register_url("tgram://123456789:AAHsecretBotToken/987654")
    line = mask("Telegram POST URL: https://api.telegram.org/bot123456789:AAHsecretBotToken/x")
    assert "AAHsecretBotToken" not in line and "123456789" not in line


# -- 6: a tampered install manifest ------------------------------------------------


def _installed(tmp_path: Path) -> Layout:
    layout = Layout(tmp_path / "root", PurePosixPath("/var/lib/nixmox"))
    layout.root.mkdir()
    units = {
        "nixmox-snapshot.service": "[Service]\nExecStart=/bin/true\n",
        "nixmox-snapshot.timer": "[Timer]\nOnCalendar=hourly\n",
    }
    install(layout, units, runner=None)
    return layout


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("timers", ["sshd.service"]),
        ("timers", ["pve-cluster.service"]),
        ("timers", ["nixmox-other.timer"]),  # ours by name, but not a file install wrote
        ("created_dirs", ["/home"]),
        ("created_dirs", ["/var/lib/nixmox/../../../etc"]),
    ],
)
def test_uninstall_refuses_a_manifest_naming_what_nixmox_never_wrote(
    tmp_path: Path, key: str, value: list[str]
) -> None:
    layout = _installed(tmp_path)
    data = json.loads(layout.manifest.read_text())
    data[key] = value
    layout.manifest.write_text(json.dumps(data))
    unit = layout.unit_dir / "nixmox-snapshot.timer"
    with pytest.raises(NixmoxError, match="never writes; refusing"):
        uninstall(layout, runner=Runner())
    assert unit.exists()  # nothing removed


@pytest.mark.parametrize(
    ("key", "value"),
    [("files", ["/etc/systemd/system/sshd.service"]), ("timers", "sshd.service"),
     ("created_dirs", {"/home": 1})],
)  # fmt: skip
def test_uninstall_refuses_a_manifest_of_the_wrong_shape_in_one_line(
    tmp_path: Path, key: str, value: object
) -> None:
    layout = _installed(tmp_path)
    data = json.loads(layout.manifest.read_text())
    data[key] = value
    layout.manifest.write_text(json.dumps(data))
    with pytest.raises(NixmoxError, match=f"{key} is not a|never writes; refusing"):
        uninstall(layout, runner=Runner())
    assert (layout.unit_dir / "nixmox-snapshot.timer").exists()


def test_install_keeps_the_state_directory_private(tmp_path: Path) -> None:
    layout = _installed(tmp_path)
    state = layout.inside(layout.state_dir)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE(layout.manifest.stat().st_mode) == 0o600


def test_a_changed_unit_is_named_with_its_root(tmp_path: Path) -> None:
    layout = _installed(tmp_path)
    unit = layout.unit_dir / "nixmox-snapshot.timer"
    unit.write_text("[Timer]\nOnCalendar=daily\n")
    with pytest.raises(NixmoxError, match=str(unit)):
        uninstall(layout, runner=None)


# -- 7 and 8: the state directory, links and temp names ----------------------------


def test_a_state_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    with pytest.raises(NixmoxError, match="writable by group or others"):
        Journal(state)
    assert not (state / "journal.sqlite3").exists()


def test_a_readable_state_directory_is_tightened_and_files_are_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    journal = Journal(state)
    journal.close()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "journal.sqlite3").stat().st_mode) == 0o600


@pytest.mark.parametrize("name", ["locks/job%3Asnapshot.lock", "locks", "journal.sqlite3"])
def test_a_planted_link_is_never_followed(tmp_path: Path, name: str) -> None:
    state = ensure_state_dir(tmp_path / "state")
    (state / "locks").mkdir()
    victim = tmp_path / "victim"
    if name == "locks":
        (state / "locks").rmdir()
        victim.mkdir()
    else:
        victim.write_text("precious\n")
    (state / name).symlink_to(victim)
    with pytest.raises(NixmoxError, match="symlink"):
        if name.startswith("locks"):
            LockSet(state, "snapshot").acquire([job_claim("snapshot")], wait=0)
        else:
            Journal(state)
    if name == "locks":
        assert list(victim.iterdir()) == []
    else:
        assert victim.read_text() == "precious\n"


def test_the_run_counters_write_through_no_planted_link(tmp_path: Path) -> None:
    from nixmox.observe import run_counts

    state = ensure_state_dir(tmp_path / "state")
    journal = Journal(state)
    journal.finish(journal.start("backup"), "ok", {})
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    # The fixed temp name an earlier version used, and the lock, point at the victim.
    (state / f".{run_counts.FILE}.{os.getpid()}").symlink_to(victim)
    (state / f"{run_counts.FILE}.lock").symlink_to(victim)
    with pytest.raises(NixmoxError, match="symlink"):
        run_counts.update(state, journal.runs(), journal.totals, lambda run: ())
    (state / f"{run_counts.FILE}.lock").unlink()
    run_counts.update(state, journal.runs(), journal.totals, lambda run: ())
    journal.close()
    assert victim.read_text() == "precious\n"
    counters = state / run_counts.FILE
    assert not counters.is_symlink() and stat.S_IMODE(counters.stat().st_mode) == 0o600


def test_atomic_writes_use_a_fresh_name_and_replace_a_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    target = tmp_path / "nixmox.prom"
    # The fixed temp names of old, and the target itself, point at the victim.
    (tmp_path / ".nixmox.prom.nixmox-tmp").symlink_to(victim)
    target.symlink_to(victim)
    write_atomically(target, b"new\n", 0o644)
    assert victim.read_text() == "precious\n"
    assert not target.is_symlink() and target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".nixmox.prom.nixmox-tmp",
        "nixmox.prom",
        "victim",
    ]


# -- 9: secrets never reach children -------------------------------------------------


def test_commands_nixmox_runs_never_see_the_api_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NIXMOX_PVE_TOKEN", "tok-secret-1234")
    monkeypatch.setenv("NIXMOX_PVE_PASSWORD", "pw-secret-5678")
    seen = Runner().run(["env"], changes=False).stdout
    assert "tok-secret-1234" not in seen and "pw-secret-5678" not in seen
    assert "NIXMOX_PVE_TOKEN" not in seen


def test_the_cli_takes_the_secrets_out_of_its_environment(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    dump = tmp_path / "zfs-env"
    for tool in ("zfs", "zpool"):
        script = bin_dir / tool
        script.write_text(f"#!/bin/sh\nenv > {dump}\nexit 1\n")
        script.chmod(0o755)
    inv = tmp_path / "n.toml"
    inv.write_text(
        'timezone = "UTC"\n[snapshots.policies.p]\nkeep-last = 2\n'
        '[[snapshots.datasets]]\ndataset = "bpool/a"\npolicy = "p"\n'
    )
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "NIXMOX_PVE_TOKEN": "tok-secret-1234",
        "NIXMOX_STATE_DIR": str(tmp_path / "state"),
        "PYTHONPATH": str(ROOT / "src"),
    }
    nixmox = str(Path(sys.executable).parent / "nixmox")
    subprocess.run(
        [nixmox, "snapshot", "--dry-run", "--config", str(inv)],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert dump.exists()  # zfs really ran
    assert "tok-secret-1234" not in dump.read_text()


def test_notification_urls_in_the_environment_reach_no_child(tmp_path: Path) -> None:
    # A backup with a stand-in zfs that records its environment, notifying through
    # NIXMOX_NOTIFY_URLS: the URL's token is used for sending, and no child sees it.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    dump = tmp_path / "zfs-env"
    for tool in ("zfs", "zpool"):
        script = bin_dir / tool
        script.write_text(f"#!/bin/sh\nenv >> {dump}\nexit 1\n")
        script.chmod(0o755)
    inv = tmp_path / "n.toml"
    inv.write_text(
        'timezone = "UTC"\n[snapshots.policies.p]\nkeep-last = 2\n'
        '[[snapshots.datasets]]\ndataset = "bpool/a"\npolicy = "p"\n'
        '[notify]\non = ["failure"]\n'
    )
    with receiver() as rec:
        env = {
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "NIXMOX_NOTIFY_URLS": f"json://127.0.0.1:{rec.port}/hook/UrlToken4242",
            "NIXMOX_STATE_DIR": str(tmp_path / "state"),
            "NIXMOX_METRICS_TEXTFILE": "",
            "PYTHONPATH": str(ROOT / "src"),
        }
        nixmox = str(Path(sys.executable).parent / "nixmox")
        done = subprocess.run(
            [nixmox, "snapshot", "--config", str(inv)], env=env, capture_output=True, timeout=60
        )
        assert rec.bodies, done.stderr  # the failure was notified through the URL
    assert dump.exists()  # zfs really ran
    assert "UrlToken4242" not in dump.read_text()


# -- 10: what verified TLS, and pins that are not SHA-256 ---------------------------

SHA1 = ":".join(["AB"] * 20)
SHA256 = ":".join(["AB"] * 32)


@pytest.mark.parametrize(("pin", "hint"), [(SHA1, "SHA-1"), (":".join(["AB"] * 16), "MD5")])
def test_a_pin_that_is_not_sha256_is_refused_from_the_environment(pin: str, hint: str) -> None:
    settings = ProxmoxSettings(url="https://pve.home.arpa:8006", token_id="a@pve!b")
    env = {"NIXMOX_PVE_FINGERPRINT": pin, "NIXMOX_PVE_TOKEN": "secret"}
    with pytest.raises(ConfigError, match=f"NIXMOX_PVE_FINGERPRINT: .*{hint}"):
        connection(settings, env)


def test_doctor_names_what_verified_the_connection() -> None:
    url = "https://pve.home.arpa:8006"
    pinned = Connection(url, "a@pve!b", "s", ca_file="/etc/ca.pem", fingerprint=SHA256)
    assert "pinned SHA-256 fingerprint" in pinned.verified_by
    assert "/etc/ca.pem not used" in pinned.verified_by
    assert Connection(url, "a@pve!b", "s", ca_file="/etc/ca.pem").verified_by.startswith("CA file")
    assert Connection(url, "a@pve!b", "s").verified_by == "the system trust store"


# -- 11: guest and API text reaches no terminal raw -----------------------------------


@given(st.text())
def test_printable_leaves_no_control_character(text: str) -> None:
    out = printable(text)
    assert all(c in "\n\t" or (c.isprintable() or c == " ") for c in out if ord(c) < 0xA0)
    assert "\x1b" not in out and "\x9b" not in out
    assert printable(out) == out


def test_printable_keeps_ordinary_text() -> None:
    assert printable("2026-12 Cumulative Update (KB5046633): ok\n") == (
        "2026-12 Cumulative Update (KB5046633): ok\n"
    )
    assert printable(f"{ESCAPES}fake line\r\n") == "fake line\n"


def test_command_errors_carry_no_escape_sequences() -> None:
    error = CommandError(["nixos-rebuild"], 1, "", f"error: {ESCAPES}build failed\n")
    assert "\x1b" not in str(error) and "build failed" in str(error)


def test_an_api_message_with_escapes_reaches_neither_output_nor_journal(
    lab_env: RunningLab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = lab_env
    lab.pve.add_declared_guests()
    lab.pve.fail_backup(101, f"{ESCAPES}disk gone")
    assert run(["backup", "--config", str(EXAMPLE), "--guest", "nixos-vm"]) == 1
    assert run(["history"]) == 0
    out = capsys.readouterr()
    assert "disk gone" in out.out
    assert "\x1b" not in out.out + out.err and "\x07" not in out.out + out.err
    journal = Journal(tmp_path / "state")
    try:
        assert "\x1b" not in json.dumps(journal.runs()[0].summary, ensure_ascii=False)
    finally:
        journal.close()


# -- 2: ssh option injection from the inventory ----------------------------------------

INJECTIONS = [
    "-oProxyCommand=sh -c 'touch /tmp/nixmox-pwned' #",
    "-oProxyCommand=touch${IFS}/tmp/nixmox-pwned",
    "root@host;touch /tmp/nixmox-pwned",
    "root@host name",
    "root@$(touch /tmp/nixmox-pwned)",
]


@pytest.mark.parametrize("destination", INJECTIONS)
def test_config_check_refuses_an_ssh_destination_ssh_would_read_as_an_option(
    tmp_path: Path, destination: str, capsys: pytest.CaptureFixture[str]
) -> None:
    inv = tmp_path / "n.toml"
    quoted = json.dumps(destination)
    inv.write_text(
        'timezone = "UTC"\n[[nodes]]\nname = "pve1"\n'
        f"address = {quoted}\n"
        '[[guests]]\nname = "web"\nvmid = 100\nkind = "lxc"\nnode = "pve1"\n'
        f'[guests.update]\nmethod = "nixos"\nvia = "ssh"\nssh = {quoted}\n'
    )
    assert run(["config", "check", "--config", str(inv)]) == 1
    err = capsys.readouterr().err
    assert "nodes[0].address" in err and "guests[0].update.ssh" in err
    assert run(["update", "nixos", "--dry-run", "--config", str(inv)]) != 0
    assert not Path("/tmp/nixmox-pwned").exists()


def test_the_runner_puts_every_destination_after_the_option_end() -> None:
    from nixmox.adapters.runner import Remote

    argv = Remote.to("root@nixos-vm.home.arpa:2222", {}).wrap(["true"], None)
    assert argv[argv.index("--") + 1] == "root@nixos-vm.home.arpa"
    assert argv[argv.index("-p") + 1] == "2222"
    for bad in INJECTIONS:
        with pytest.raises(ConfigError):
            Remote.to(bad, {})


# -- 5: qm listsnapshot read by its name column -----------------------------------------

# Descriptions as a guest's admin may write them: an arrow and a newer nixmox name each.
LISTSNAPSHOT = r"""#!/bin/sh
echo "$*" >> "$QM_LOG"
case $1 in
  listsnapshot) cat <<'TREE'
`-> nixmox_update_20261101T030000Z 2026-11-01 03:00:00     before a nixmox update
  `-> nixmox_update_20261108T030000Z 2026-11-08 03:00:00   see -> nixmox_update_20991231T000000Z
    `-> pre-driver                   2026-11-10 12:00:00   `-> nixmox_update_20991230T000000Z
      `-> nixmox_update_20261115T030000Z 2026-11-15 03:00:00 a -> nixmox_update_20991229T000000Z b
        `-> current                                        You are here!
TREE
  ;;
  delsnapshot) ;;
  *) exit 2 ;;
esac
"""


def test_descriptions_in_qm_listsnapshot_yield_no_phantom_snapshots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nixmox.rules.retention import Keep
    from nixmox.windows.update_local import QmGuest

    qm = tmp_path / "qm"
    qm.write_text(LISTSNAPSHOT)
    qm.chmod(0o755)
    log = tmp_path / "qm.log"
    monkeypatch.setenv("QM_LOG", str(log))
    guest = QmGuest(Runner(), 102, qm=str(qm))
    assert guest.names() == [
        "nixmox_update_20261101T030000Z",
        "nixmox_update_20261108T030000Z",
        "pre-driver",
        "nixmox_update_20261115T030000Z",
    ]
    # keep-last 2 keeps the two newest real ones; phantoms would have pushed them out.
    assert guest.prune(Keep(last=2), UTC) == ["nixmox_update_20261101T030000Z"]
    deleted = [line for line in log.read_text().splitlines() if line.startswith("delsnapshot")]
    assert deleted == ["delsnapshot 102 nixmox_update_20261101T030000Z"]


# -- 4: a hostile guest agent on the host's socket ------------------------------------


class FloodingAgent:
    """A scripted guest agent on a unix socket (a thread): it resyncs like qemu-ga, then
    answers each command with ``answer(command)``: bytes to send, or an iterator of them
    that may never end (the flood)."""

    def __init__(self, path: Path, answer: Any) -> None:
        self.path = path
        self.answer = answer
        self.stop = threading.Event()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(4)
        self.server.settimeout(0.2)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.server.close()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            # OSError: the client hung up on the flood, which is what it should do.
            with conn, contextlib.suppress(OSError):
                self._talk(conn)

    def _talk(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        for raw in reader:
            if self.stop.is_set():
                return
            message = json.loads(raw.lstrip(b"\xff"))
            if message["execute"] == "guest-sync-delimited":
                reply = {"return": message["arguments"]["id"]}
                conn.sendall(b"\xff" + json.dumps(reply).encode() + b"\n")
                continue
            sent = self.answer(message["execute"])
            for piece in [sent] if isinstance(sent, bytes) else sent:
                if self.stop.is_set():
                    return
                conn.sendall(piece)


def endless(piece: bytes, pause: float = 0.0) -> Iterator[bytes]:
    while True:
        yield piece
        if pause:
            time.sleep(pause)


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[Any]:
    started: list[FloodingAgent] = []

    def start(answer: Any) -> SocketAgent:
        started.append(FloodingAgent(tmp_path / "102.qga", answer))
        return SocketAgent(102, directory=tmp_path, timeout=1.0, budget=3.0)

    yield start
    for agent in started:
        agent.close()


def test_an_answer_that_never_ends_is_cut_at_the_byte_cap(hostile: Any) -> None:
    agent = hostile(lambda command: endless(b"A" * 65536))
    began = time.monotonic()
    with pytest.raises(AgentError, match=f"more than {MAX_ANSWER} bytes"):
        agent.ping()
    assert time.monotonic() - began < 10


@pytest.mark.parametrize("pause", [0.0, 0.05], ids=["flood", "trickle"])
def test_a_guest_that_keeps_sending_after_its_answer_cannot_hold_close(
    hostile: Any, pause: float
) -> None:
    answers = {"guest-ping": b'{"return": {}}\n'}
    agent = hostile(
        lambda command: itertools.chain([answers[command]], endless(b"\n" * 4096, pause))
    )
    began = time.monotonic()
    agent.ping()  # answered; the drain on closing gives up by its own bounds
    assert time.monotonic() - began < DRAIN_SECONDS + 3


def test_a_file_that_never_ends_stops_at_the_overall_deadline(hostile: Any) -> None:
    def answer(command: str) -> bytes:
        if command == "guest-file-open":
            return b'{"return": 7}\n'
        if command == "guest-file-read":
            time.sleep(0.05)  # each answer well within the per-answer timeout
            return b'{"return": {"count": 1, "buf-b64": "QQ==", "eof": false}}\n'
        return b'{"return": {}}\n'

    agent = hostile(answer)
    began = time.monotonic()
    with pytest.raises(AgentError, match="overall deadline"):
        agent.file_read("C:\\ProgramData\\nixmox\\huge.txt")
    assert time.monotonic() - began < 8


def test_stale_lines_before_the_resync_answer_are_bounded(tmp_path: Path) -> None:
    # Never answers the resync: only ever more stale lines, fast.
    server = FloodingAgent(tmp_path / "102.qga", lambda command: b"")
    server._talk = lambda conn: conn.sendall(b"{}\n" * 10_000_000)  # type: ignore[method-assign]
    try:
        agent = SocketAgent(102, directory=tmp_path, timeout=1.0, budget=3.0, max_answer=4096)
        began = time.monotonic()
        with pytest.raises(AgentError, match="before answering the resynchronisation"):
            agent.ping()
        assert time.monotonic() - began < 5
    finally:
        server.close()


@pytest.mark.peer
def test_the_real_agent_answering_too_much_is_refused_and_survives(
    qga: QemuGuestAgent, tmp_path: Path
) -> None:
    (tmp_path / "102.qga").symlink_to(qga.socket_path)
    agent = SocketAgent(102, directory=tmp_path, poll=0.05, max_answer=256 * 1024)
    with pytest.raises(AgentError, match=f"more than {256 * 1024} bytes"):
        agent.exec(["/bin/sh", "-c", "head -c 300000 /dev/zero"])
    # The connection was closed without leaving the agent stuck: the next call works.
    agent.ping()
    assert agent.exec(["/bin/echo", "fine"]).stdout == "fine\n"


# -- 1: the Windows guest's folders, scripts and installers (pure parts) ---------------
# The lab's scripted Windows guests show nixmox refusing in tests/test_windows_provision.py
# and tests/test_windows_update.py; these are the decisions and the command line.


@pytest.mark.parametrize(
    ("sddl", "problems"),
    [
        (PROTECTED, []),
        ("O:SYG:SYD:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1200a9;;;BU)", []),
        ("O:S-1-5-32-544G:SYD:PAI(A;OICIIO;GA;;;CO)(A;OICI;FA;;;S-1-5-18)", []),
        (PROGRAMDATA_CHILD, ["lets Users (S-1-5-32-545) write in it"]),
        (ROOT_CHILD, ["lets Authenticated Users (S-1-5-11) write in it"]),
        (PLANTED, [f"is owned by {PLAYER}, not SYSTEM or Administrators"]),
        ("O:BAG:SYD:PAI(A;OICI;FA;;;SY)(A;;CCDC;;;WD)", ["lets Everyone (S-1-1-0) write in it"]),
        ("O:BAG:SYD:PAI(A;OICI;FA;;;SY)(D;OICI;FA;;;WD)", []),  # a deny takes away only
        ("O:BAG:SYD:PAI(A;OICIIO;GW;;;BU)", ["lets Users (S-1-5-32-545) write in it"]),
        ("O:BAG:SYD:NO_ACCESS_CONTROL", ["has no permissions at all (everyone may write)"]),
        ("O:BAG:SYD:PAI(A;OICI;ZZ;;;BU)", ["lets Users (S-1-5-32-545) write in it"]),
        ("", ["its permissions could not be read (none reported)"]),
        ("O:BAG:SYD:PAI(A;OICI;FA;;;SY", ["its permissions could not be read"]),
    ],
)
def test_who_may_write_a_guest_folder_is_read_from_its_sddl(sddl: str, problems: list[str]) -> None:
    found = acl_problems(sddl)
    assert len(found) == len(problems)
    for got, wanted in zip(found, problems, strict=True):
        assert got.startswith(wanted)


@given(st.text(alphabet="OGDSPAI():;0x123456789abcdefFRWXCLN-_ ", max_size=80))
def test_an_unreadable_sddl_is_never_safe_by_accident(sddl: str) -> None:
    # Whatever the text, only an owner nixmox trusts with no other writer passes.
    if not acl_problems(sddl):
        assert re.match(r"O:(SY|BA|S-1-5-18|S-1-5-32-544)", sddl.strip())


@pytest.mark.parametrize(
    ("signature", "fine"),
    [
        (VALVE_SIGNED, True),
        ({"status": "Valid", "subject": 'CN="Valve Corp.", O="Valve Corp."'}, True),
        ({"status": "Valid", "subject": "CN=Valve Corporation, O=Valve Corporation"}, True),
        ({"status": "NotSigned", "subject": ""}, False),
        ({"status": "HashMismatch", "subject": VALVE_SIGNED["subject"]}, False),
        ({"status": "Valid", "subject": "CN=Valve Corp. Fake, O=Someone"}, False),
        ({"status": "Valid", "subject": "OU=Valve Corp., CN=Someone"}, False),
        (None, False),
    ],
)
def test_only_a_valid_signature_by_valve_lets_an_installer_run(
    signature: dict[str, str] | None, fine: bool
) -> None:
    assert (signature_problem("SteamSetup.exe", signature) is None) is fine


@given(st.dictionaries(st.sampled_from(["User", "Dir", "BusyProcesses"]), st.text(), max_size=3))
def test_values_reach_powershell_as_one_quoted_string(params: dict[str, str]) -> None:
    argv = script_argv("provision-steam-task", params)
    text = base64.b64decode(argv[-1]).decode("utf-16-le")
    header = text.partition("\n")[0]
    assert header.isascii()  # no typographic quote, which PowerShell also ends a string at
    literal = header.removeprefix("$Nixmox = ConvertFrom-Json ")
    assert re.fullmatch(r"'(?:[^']|'')*'", literal)  # one string, nothing after it
    decoded = script_call(argv)
    assert decoded == ("provision-steam-task", params)


def test_tracebacks_at_debug_level_are_masked_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    from nixmox.cli import app
    from nixmox.core.log import register_secret

    register_secret("tb-secret-4711")

    def fails(args: list[str]) -> int:
        try:
            raise OSError("connect to https://u:tb-secret-4711@hook.example/x failed")
        except OSError:
            logging.getLogger("apprise").warning("delivery failed", exc_info=True)
        raise NixmoxError("notify: tb-secret-4711 refused")

    monkeypatch.setattr(app, "invoke", fails)
    assert run(["-vv", "status"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "OSError" in err and "NixmoxError" in err
    assert "tb-secret-4711" not in err


# -- 11 (continued): what a guest agent says --------------------------------------------


@pytest.mark.peer
def test_guest_output_files_and_errors_come_back_without_escapes(
    qga: QemuGuestAgent, tmp_path: Path
) -> None:
    (tmp_path / "102.qga").symlink_to(qga.socket_path)
    agent = SocketAgent(102, directory=tmp_path, poll=0.05)
    shown = agent.exec(["/bin/printf", "\\033]0;owned\\007\\033[2Jtitle\\r\\n"])
    assert shown.stdout == "title\n"
    planted = tmp_path / "appmanifest.acf"
    planted.write_text(f'"name" "{ESCAPES}Rust"\n')
    assert agent.file_read(str(planted)) == '"name" "Rust"\n'


def test_an_agent_error_in_the_guests_words_has_no_escapes(hostile: Any) -> None:
    error = {"error": {"class": "GenericError", "desc": f"{ESCAPES}no such file"}}
    agent = hostile(lambda command: json.dumps(error).encode() + b"\n")
    with pytest.raises(AgentError) as caught:
        agent.file_read("C:\\x")
    assert "no such file" in str(caught.value) and "\x1b" not in str(caught.value)
