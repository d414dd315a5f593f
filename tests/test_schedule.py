"""systemd units: rendered from the inventory, checked by the real systemd-analyze,
installed into a root and removed again without a trace."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from nixmox.adapters.journal import Journal
from nixmox.adapters.runner import Runner
from nixmox.cli.main import run
from nixmox.core.errors import ConfigError
from nixmox.inventory.load import load_inventory, parse_inventory
from nixmox.rules.oncalendar import parse_calendar
from nixmox.schedule import install as installer
from nixmox.schedule.units import JOBS, UnitSettings, render_units, timers
from tests.peers.require import need_binary

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "homelab.toml"

# What `systemd-analyze calendar` prints for the example's schedules: each in
# the inventory's zone, whatever zone this machine runs in.
EXAMPLE_CALENDARS = {
    "nixmox-snapshot.timer": "*-*-* *:00:00 Europe/Vienna",
    "nixmox-replicate.timer": "*-*-* 01:00:00 Europe/Vienna",
    "nixmox-backup.timer": "*-*-* 02:30:00 Europe/Vienna",
    "nixmox-backup-verify.timer": "Sun *-*-* 06:00:00 Europe/Vienna",
    "nixmox-update-host.timer": "Sat *-*-* 04:00:00 Europe/Vienna",
    "nixmox-update-nixos.timer": "*-*-* 03:30:00 Europe/Vienna",
    "nixmox-update-windows.timer": "Wed *-*-* 05:00:00 Europe/Vienna",
    "nixmox-pool-scrub.timer": "Sun *-*-01..07 01:00:00 Europe/Vienna",
    "nixmox-pool-trim.timer": "Sat *-*-* 01:00:00 Europe/Vienna",
    "nixmox-pool-check.timer": "*-*-* 07:00:00 Europe/Vienna",
}

SMALL = """\
timezone = "UTC"
[proxmox]
token_file = "{token}"
[[guests]]
name = "web"
vmid = 100
kind = "lxc"
node = "pve1"
[guests.update]
method = "nixos"
via = "{via}"
ssh = "root@web.home.arpa"
[schedules]
snapshot = "*:0/15"
update_nixos = "Mon..Fri 03:00 UTC"
persistent = false
"""


@pytest.fixture
def analyze() -> str:
    return need_binary("systemd-analyze", "systemd")


@pytest.fixture
def executable(tmp_path: Path) -> Path:
    """A real file for ExecStart= (verify refuses a missing binary)."""
    path = tmp_path / "bin" / "nixmox"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def _settings(executable: Path, **overrides: object) -> UnitSettings:
    values: dict[str, object] = {
        "executable": PurePosixPath(executable),
        "config": PurePosixPath(EXAMPLE),
        "state_dir": PurePosixPath("/var/lib/nixmox"),
    }
    values.update(overrides)
    return UnitSettings(**values)  # type: ignore[arg-type]


def _write(units: dict[str, str], directory: Path) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in units.items():
        (directory / name).write_text(text)
    return [str(directory / name) for name in units]


def _verify(analyze: str, files: list[str]) -> None:
    proc = subprocess.run(
        [analyze, "verify", "--man=no", *files], capture_output=True, text=True, timeout=60
    )
    # Not only the exit code: systemd merely warns about unknown keys and
    # bad values, so a clean unit is one it has nothing to say about.
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr


def _keys(text: str, key: str) -> list[str]:
    return re.findall(rf"^{key}=(.*)$", text, flags=re.MULTILINE)


# -- rendering, checked by systemd-analyze ---------------------------------------


@pytest.mark.peer
def test_every_example_unit_verifies(analyze: str, executable: Path, tmp_path: Path) -> None:
    units = render_units(load_inventory(EXAMPLE), _settings(executable))
    assert set(units) == {j.service for j in JOBS} | {j.timer for j in JOBS} | {
        "nixmox-failed@.service"
    }
    _verify(analyze, _write(units, tmp_path / "units"))


@pytest.mark.peer
def test_timer_calendars_normalise_as_systemd_reads_them(analyze: str, executable: Path) -> None:
    units = render_units(load_inventory(EXAMPLE), _settings(executable))
    specs = {name: _keys(units[name], "OnCalendar")[0] for name in timers(units)}
    proc = subprocess.run(
        [analyze, "calendar", *specs.values()], capture_output=True, text=True, check=True
    )
    normalized = re.findall(r"Normalized form: (.*)", proc.stdout)
    assert dict(zip(specs, normalized, strict=True)) == EXAMPLE_CALENDARS
    # `config check` accepted these with nixmox's own parser: it agrees.
    assert {n: parse_calendar(s).normalized() for n, s in specs.items()} == EXAMPLE_CALENDARS


@pytest.mark.peer
def test_small_inventory_units_verify(analyze: str, executable: Path, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token-value\n")
    inv = parse_inventory(SMALL.format(token=token, via="ssh"))
    state = PurePosixPath("/srv/nixmox-state")
    units = render_units(inv, _settings(executable, state_dir=state))
    assert sorted(units) == [
        "nixmox-failed@.service",
        "nixmox-snapshot.service",
        "nixmox-snapshot.timer",
        "nixmox-update-nixos.service",
        "nixmox-update-nixos.timer",
    ]
    _verify(analyze, _write(units, tmp_path / "units"))
    snapshot, update = units["nixmox-snapshot.service"], units["nixmox-update-nixos.service"]
    # Outside /var/lib systemd cannot create the state directory: named writable instead.
    assert _keys(update, "ReadWritePaths") == [str(state)]
    assert _keys(update, "Environment") == [f"NIXMOX_STATE_DIR={state}"]
    # The token: a credential for the jobs that use the API, nowhere else.
    assert _keys(update, "LoadCredential") == [f"nixmox-pve-token:{token}"]
    assert _keys(snapshot, "LoadCredential") == []
    assert not any("s3cret" in text for text in units.values())
    # A zone given in the spec wins over the inventory's; persistent = false.
    timer = units["nixmox-update-nixos.timer"]
    assert _keys(timer, "OnCalendar") == ["Mon..Fri 03:00 UTC"]
    assert _keys(timer, "Persistent") == ["false"]
    assert _keys(timer, "RandomizedDelaySec") == _keys(timer, "FixedRandomDelay") == []


def test_every_unit_says_nixmox_generated_it(executable: Path) -> None:
    units = render_units(load_inventory(EXAMPLE), _settings(executable))
    for text in units.values():
        assert text.startswith("# nixmox")
        assert "# Generated by nixmox " in text.splitlines()[1]


def test_job_units_have_the_contract_settings(executable: Path) -> None:
    units = render_units(load_inventory(EXAMPLE), _settings(executable))
    for job in JOBS:
        service, timer = units[job.service], units[job.timer]
        assert _keys(service, "Type") == ["oneshot"]
        assert _keys(service, "ExecStart") == [
            f"{executable} --config {EXAMPLE} {' '.join(job.command)}"
        ]
        assert _keys(service, "TimeoutStartSec") == [job.timeout]
        assert _keys(service, "OnFailure") == ["nixmox-failed@%n.service"]
        assert _keys(service, "After") == _keys(service, "Wants") == ["network-online.target"]
        assert _keys(service, "PrivateTmp") == ["yes"]
        assert _keys(service, "StateDirectory") == ["nixmox"]
        assert _keys(timer, "Persistent") == ["true"]
        assert _keys(timer, "RandomizedDelaySec") == ["10m"]
        assert _keys(timer, "FixedRandomDelay") == ["true"]
        assert _keys(timer, "WantedBy") == ["timers.target"]
    # apt rewrites the system: the host update cannot run read-only.
    assert _keys(units["nixmox-update-host.service"], "ProtectSystem") == []
    assert _keys(units["nixmox-backup.service"], "ProtectSystem") == ["strict"]
    assert _keys(units["nixmox-backup.service"], "NoNewPrivileges") == ["yes"]
    # zfs needs /dev/zfs: no device restrictions on the snapshot job.
    snapshot = units["nixmox-snapshot.service"]
    for key in ("PrivateDevices", "DevicePolicy", "DeviceAllow", "ProtectClock"):
        assert _keys(snapshot, key) == []
    assert _keys(units["nixmox-failed@.service"], "ExecStart") == [
        f"{executable} --config {EXAMPLE} unit-failed %i"
    ]


def test_old_systemd_gets_no_fixed_random_delay(executable: Path) -> None:
    units = render_units(load_inventory(EXAMPLE), _settings(executable, systemd_version=245))
    assert all("FixedRandomDelay" not in units[t] for t in timers(units))
    assert all(_keys(units[t], "RandomizedDelaySec") == ["10m"] for t in timers(units))


def test_pct_updates_run_without_the_sandbox(executable: Path, tmp_path: Path) -> None:
    inv = parse_inventory(SMALL.format(token=tmp_path / "t", via="pct"))
    units = render_units(inv, _settings(executable))
    update = units["nixmox-update-nixos.service"]
    assert _keys(update, "ProtectSystem") == _keys(update, "NoNewPrivileges") == []
    assert _keys(units["nixmox-snapshot.service"], "ProtectSystem") == ["strict"]


WINDOWS = """\
timezone = "UTC"
[proxmox]
url = "https://pve1.home.arpa:8006"
{login}
[[guests]]
name = "win"
vmid = 102
kind = "vm"
node = "pve1"
[guests.update]
method = "windows"
[schedules]
update_windows = "Wed 05:00"
"""


@pytest.mark.peer
def test_windows_updates_through_qm_run_without_the_sandbox(
    analyze: str, executable: Path, tmp_path: Path
) -> None:
    # Issue 24 item 8: without an API login the job runs qm on the host, which
    # writes /etc/pve, /var/log/pve and /run/lock: no ProtectSystem=strict then.
    local = render_units(parse_inventory(WINDOWS.format(login="")), _settings(executable))
    update = local["nixmox-update-windows.service"]
    assert _keys(update, "ProtectSystem") == _keys(update, "NoNewPrivileges") == []
    assert _keys(update, "LoadCredential") == []
    _verify(analyze, _write(local, tmp_path / "local"))
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    login = f'token_id = "root@pam!nixmox"\ntoken_file = "{token}"'
    api = render_units(parse_inventory(WINDOWS.format(login=login)), _settings(executable))
    assert _keys(api["nixmox-update-windows.service"], "ProtectSystem") == ["strict"]
    _verify(analyze, _write(api, tmp_path / "api"))


def test_refuses_without_schedules_or_with_unsafe_paths(executable: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[schedules\]"):
        render_units(parse_inventory('timezone = "UTC"\n'), _settings(executable))
    inv = load_inventory(EXAMPLE)
    with pytest.raises(ConfigError, match="spaces"):
        render_units(inv, _settings(executable, config=PurePosixPath("/etc/my lab.toml")))


# -- install / uninstall ----------------------------------------------------------


def _tree(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under ``root`` with its mode and (for files) its content."""
    found: dict[str, tuple[int, bytes | None]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            content = path.read_bytes() if path.is_file() else None
            found[str(path.relative_to(root))] = (path.stat().st_mode, content)
    return found


@pytest.fixture
def cli_env(executable: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("NIXMOX_EXECUTABLE", str(executable))
    monkeypatch.setenv("NIXMOX_STATE_DIR", "/var/lib/nixmox")
    yield


def _nixmox(*args: str) -> int:
    return run(["--config", str(EXAMPLE), *args])


@pytest.mark.peer
def test_install_into_root_verifies_and_uninstall_leaves_nothing(
    cli_env: None, analyze: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    # Something of the host's own that must survive both.
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    (root / "etc" / "systemd" / "system" / "sshd.service").write_text("[Service]\n")
    before = _tree(root)

    assert _nixmox("install", "--root", str(root)) == 0
    unit_dir = root / "etc" / "systemd" / "system"
    installed = sorted(p.name for p in unit_dir.glob("nixmox-*"))
    assert len(installed) == 21
    _verify(analyze, [str(unit_dir / name) for name in installed])
    manifest = root / "var" / "lib" / "nixmox" / "installed-units.json"
    assert manifest.stat().st_mode & 0o777 == 0o600
    out = capsys.readouterr().out
    assert "nothing enabled (--root)" in out and "ran systemctl" not in out

    # Again: nothing to write, nothing refused.
    assert _nixmox("install", "--root", str(root)) == 0
    assert "wrote" not in capsys.readouterr().out

    assert _nixmox("uninstall", "--root", str(root)) == 0
    assert _tree(root) == before


def test_install_refuses_a_unit_it_did_not_write(
    cli_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    theirs = root / "etc" / "systemd" / "system" / "nixmox-backup.service"
    theirs.parent.mkdir(parents=True)
    theirs.write_text("# mine\n")
    before = _tree(root)
    assert _nixmox("install", "--root", str(root)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nixmox-backup.service exists and was not written" in err[0]
    assert _tree(root) == before


def test_uninstall_refuses_a_changed_unit_and_removes_nothing(
    cli_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path
    assert _nixmox("install", "--root", str(root)) == 0
    edited = root / "etc" / "systemd" / "system" / "nixmox-backup.timer"
    edited.write_text(edited.read_text().replace("02:30", "03:30"))
    capsys.readouterr()
    before = _tree(root)
    assert _nixmox("uninstall", "--root", str(root)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "nixmox-backup.timer changed since `nixmox install` wrote it" in err[0]
    assert _tree(root) == before
    # Reinstalling over the edit is refused too, rather than silently undoing it.
    assert _nixmox("install", "--root", str(root)) == 1


def test_uninstall_without_install_says_so(
    cli_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _nixmox("uninstall", "--root", str(tmp_path)) == 1
    assert "nothing to uninstall" in capsys.readouterr().err


def test_reinstall_removes_units_no_longer_scheduled(executable: Path, tmp_path: Path) -> None:
    layout = installer.Layout(root=tmp_path, state_dir=PurePosixPath("/var/lib/nixmox"))
    inv = load_inventory(EXAMPLE)
    installer.install(layout, render_units(inv, _settings(executable)), runner=None)
    fewer = parse_inventory(SMALL.format(token="/etc/t", via="ssh"))
    report = installer.install(layout, render_units(fewer, _settings(executable)), runner=None)
    assert "/etc/systemd/system/nixmox-backup.timer" in report.removed
    left = sorted(p.name for p in layout.unit_dir.iterdir())
    assert left == sorted(render_units(fewer, _settings(executable)))


def test_manifest_naming_a_foreign_file_is_refused(executable: Path, tmp_path: Path) -> None:
    layout = installer.Layout(root=tmp_path, state_dir=PurePosixPath("/var/lib/nixmox"))
    installer.install(
        layout, render_units(load_inventory(EXAMPLE), _settings(executable)), runner=None
    )
    text = layout.manifest.read_text().replace(
        "/etc/systemd/system/nixmox-backup.service", "/etc/passwd"
    )
    layout.manifest.write_text(text)
    with pytest.raises(installer.NixmoxError, match="/etc/passwd, which nixmox never writes"):
        installer.uninstall(layout, runner=None)


def test_without_root_systemctl_enables_and_disables_the_timers(
    executable: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A recording stand-in: this machine's systemd is not PID 1, and the test
    # must not enable anything on it; the files still go to a temp root.
    calls = tmp_path / "calls"
    stand_in = tmp_path / "path" / "systemctl"
    stand_in.parent.mkdir()
    stand_in.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    stand_in.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stand_in.parent}:{os.environ['PATH']}")
    layout = installer.Layout(root=tmp_path / "root", state_dir=PurePosixPath("/var/lib/nixmox"))
    layout.root.mkdir()
    units = render_units(load_inventory(EXAMPLE), _settings(executable))
    installer.install(layout, units, runner=Runner())
    installer.uninstall(layout, runner=Runner())
    names = " ".join(timers(units))
    assert calls.read_text().splitlines() == [
        "daemon-reload",
        f"enable --now {names}",
        f"disable --now {names}",
        "daemon-reload",
    ]


def test_unit_failed_records_a_failed_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NIXMOX_STATE_DIR", str(tmp_path / "state"))
    assert run(["unit-failed", "nixmox-backup.service"]) == 0
    journal = Journal(tmp_path / "state")
    try:
        (entry,) = journal.runs("unit-failed")
    finally:
        journal.close()
    assert entry.result == "failed"
    assert entry.summary["unit"] == "nixmox-backup.service"
    assert entry.summary["job"] == "backup"


def test_config_check_refuses_a_calendar_systemd_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "nixmox.toml"
    bad.write_text('[schedules]\nbackup = "Mon..Fri 25:00"\n')
    assert run(["config", "check", "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "schedules.backup" in err and "hour 25 out of range" in err


def test_sandboxed_jobs_may_write_the_metrics_textfile(executable: Path) -> None:
    units = render_units(load_inventory(EXAMPLE), _settings(executable))
    assert _keys(units["nixmox-backup.service"], "ReadWritePaths") == [
        "/var/lib/prometheus/node-exporter"
    ]
    assert _keys(units["nixmox-snapshot.service"], "ReadWritePaths") == [
        "/var/lib/prometheus/node-exporter"
    ]


# -- render systemd on stdout, the state directory it bakes in -------------------------


def test_render_without_out_prints_the_units_under_their_paths(
    cli_env: None, executable: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _nixmox("render", "systemd") == 0
    captured = capsys.readouterr()
    # Split where `systemctl cat` would: each unit under a `# /etc/systemd/system/NAME` line.
    parts = re.split(r"^# /etc/systemd/system/(\S+)\n", captured.out, flags=re.MULTILINE)
    printed = dict(zip(parts[1::2], parts[2::2], strict=True))
    expected = render_units(load_inventory(EXAMPLE), _settings(executable))
    assert {name: text.rstrip("\n") for name, text in printed.items()} == {
        name: text.rstrip("\n") for name, text in expected.items()
    }
    # The default state directory comes from nowhere in particular: nothing to say.
    assert captured.err == ""


def test_render_says_when_it_bakes_the_callers_state_dir(
    cli_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NIXMOX_STATE_DIR", "/srv/nixmox-state")
    assert _nixmox("render", "systemd") == 0
    captured = capsys.readouterr()
    assert "Environment=NIXMOX_STATE_DIR=/srv/nixmox-state" in captured.out
    assert captured.err.splitlines() == [
        "the units use NIXMOX_STATE_DIR=/srv/nixmox-state from your environment "
        "(the default is /var/lib/nixmox)"
    ]


@pytest.mark.parametrize("state", ["/tmp/nixmox", "/var/tmp/state", "/tmp"])
def test_render_and_install_refuse_a_state_dir_private_tmp_hides(
    cli_env: None,
    state: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("NIXMOX_STATE_DIR", state)
    root = tmp_path / "root"
    root.mkdir()
    assert _nixmox("render", "systemd") == 1
    assert _nixmox("install", "--root", str(root)) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0] == err[1]
    assert err[0].startswith(f"nixmox: NIXMOX_STATE_DIR '{state}' is under /tmp or /var/tmp")
    assert "PrivateTmp=yes" in err[0]
    assert list(root.iterdir()) == []


def test_a_metrics_textfile_under_tmp_is_refused(executable: Path) -> None:
    text = SMALL.format(token="/etc/t", via="ssh") + '[metrics]\ntextfile = "/tmp/m/nixmox.prom"\n'
    refused = re.escape("metrics.textfile '/tmp/m/nixmox.prom' is under /tmp")
    with pytest.raises(ConfigError, match=refused):
        render_units(parse_inventory(text), _settings(executable))


def test_install_refusals_name_the_path_under_the_root(
    cli_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    unit_dir = root / "etc" / "systemd" / "system"
    assert _nixmox("install", "--root", str(root)) == 1  # no such root yet
    unit_dir.mkdir(parents=True)
    assert _nixmox("install", "--root", str(root)) == 0
    edited = unit_dir / "nixmox-snapshot.timer"
    edited.write_text(edited.read_text() + "# mine\n")
    assert _nixmox("uninstall", "--root", str(root)) == 1
    assert _nixmox("install", "--root", str(root)) == 1
    edited.unlink()
    assert _nixmox("uninstall", "--root", str(root)) == 0
    (unit_dir / "nixmox-backup.service").write_text("# mine\n")
    assert _nixmox("install", "--root", str(root)) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4
    assert err[0] == f"nixmox: {root}: no such directory to install into"
    for line in err[1:3]:
        assert f"{edited} changed since `nixmox install` wrote it" in line
    assert f"{unit_dir / 'nixmox-backup.service'} exists and was not written" in err[3]
