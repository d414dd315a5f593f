"""Hostile inputs, secrets and the state directory (issue 17): each finding reproduced."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nixmox.adapters.journal import Journal, StateLock, ensure_state_dir
from nixmox.adapters.proxmox.settings import Connection, connection
from nixmox.adapters.runner import Runner
from nixmox.cli.main import run
from nixmox.core.errors import CommandError, ConfigError, NixmoxError
from nixmox.core.files import write_atomically
from nixmox.core.log import mask, register_url
from nixmox.core.text import printable
from nixmox.inventory.model import ProxmoxSettings
from nixmox.schedule.install import Layout, install, uninstall
from tests.lab.serving import RunningLab
from tests.observe_support import receiver

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


@pytest.mark.parametrize("name", ["lock", "journal.sqlite3"])
def test_a_planted_link_is_never_followed(tmp_path: Path, name: str) -> None:
    state = ensure_state_dir(tmp_path / "state")
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (state / name).symlink_to(victim)
    with pytest.raises(NixmoxError, match="symlink"):
        if name == "lock":
            StateLock(state).acquire("snapshot", wait=0)
        else:
            Journal(state)
    assert victim.read_text() == "precious\n"


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
