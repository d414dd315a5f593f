"""Notifications delivered by the real apprise to a real HTTP endpoint on loopback."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nixmox.adapters.journal import Journal
from nixmox.core.log import mask
from nixmox.inventory.load import load_inventory
from nixmox.runtime.run import observed_run
from nixmox.schedule.install import told_by_its_run
from tests.observe_support import inventory, receiver

ROOT = Path(__file__).resolve().parent.parent

FAILED = {
    "guests": [
        {"guest": "nixos-vm", "vmid": 101, "result": "failed", "message": "vzdump failed: EOF"}
    ]
}
OK = {"guests": [{"guest": "nixos-vm", "vmid": 101, "result": "ok", "removed": ["a"]}]}


def test_failure_then_recovery_then_silence(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with receiver() as rec:
        inv = load_inventory(inventory(tmp_path, textfile=tmp_path / "m.prom", urls=[rec.url]))
        with observed_run(inv, "backup", state) as run:
            run.result, run.summary = "failed", FAILED
        assert len(rec.bodies) == 1
        first = rec.bodies[0]
        assert first["title"] == "nixmox backup failed on pve1"
        assert first["type"] == "failure" and first["_path"] == "/hook"
        assert first["message"].splitlines()[:2] == [
            "0 guests backed up, 0 archives removed",
            "1 failed: nixos-vm: vzdump failed: EOF",
        ]
        with observed_run(inv, "backup", state) as run:
            run.summary = OK
        assert rec.bodies[1]["title"] == "nixmox backup recovered on pve1"
        assert rec.bodies[1]["message"].startswith("1 guest backed up, 1 archive removed")
        with observed_run(inv, "backup", state) as run:
            run.summary = OK
        # Another job's first run, ok: not news either.
        with observed_run(inv, "backup verify", state) as run:
            run.summary = {"guests": []}
        assert len(rec.bodies) == 2
    runs = [
        line
        for line in (tmp_path / "m.prom").read_text().splitlines()
        if line.startswith("nixmox_job_runs_total{") and not line.endswith(" 0.0")
    ]
    assert runs == [
        'nixmox_job_runs_total{command="backup",result="failed"} 1.0',
        'nixmox_job_runs_total{command="backup",result="ok"} 2.0',
        'nixmox_job_runs_total{command="backup verify",result="ok"} 1.0',
    ]


def test_a_raising_job_is_reported_and_still_raises(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with receiver() as rec:
        inv = load_inventory(inventory(tmp_path, textfile=None, urls=[rec.url]))
        with pytest.raises(RuntimeError), observed_run(inv, "snapshot", state):
            raise RuntimeError("zfs exploded")
        [body] = rec.bodies
        assert body["title"] == "nixmox snapshot failed on pve1"
        assert "error: zfs exploded" in body["message"]


def test_success_when_asked_and_secrets_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    caplog.set_level(logging.DEBUG, logger="nixmox")
    with receiver() as rec:
        url = f"json://nixmox:s3cr3t-pw@127.0.0.1:{rec.port}/hook"
        path = inventory(tmp_path, textfile=None, urls=[url], on='["success", "failure"]')
        inv = load_inventory(path)
        with observed_run(inv, "apply", state) as run:
            run.summary = {"outcomes": [{"kind": "guest", "name": "nixos-vm", "result": "ok"}]}
        [body] = rec.bodies
        assert body["title"] == "nixmox apply succeeded on pve1"
        assert body["_auth"] and body["_auth"].startswith("Basic ")  # the password was used
    nixmox_logs = " ".join(r.getMessage() for r in caplog.records if r.name.startswith("nixmox"))
    assert "s3cr3t-pw" not in nixmox_logs and "json://" in nixmox_logs
    assert "s3cr3t-pw" not in mask(f"posting to {url}")


def test_unreachable_endpoint_warns_and_never_fails_the_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with receiver() as rec:
        dead = rec.url  # the server stops when the block ends
    inv = load_inventory(inventory(tmp_path, textfile=None, urls=[dead]))
    with observed_run(inv, "backup", tmp_path / "state") as run:
        run.result = "failed"
    assert any("notify: delivery through json:// failed" in r.getMessage() for r in caplog.records)


def test_environment_overrides_the_inventory(tmp_path: Path) -> None:
    from nixmox.inventory.load import load_inventory
    from nixmox.runtime.run import with_overrides

    inv = load_inventory(Path(__file__).resolve().parent.parent / "examples" / "homelab.toml")
    quiet = with_overrides(inv, {"NIXMOX_NOTIFY_URLS": "", "NIXMOX_METRICS_TEXTFILE": ""})
    assert quiet.notify is None and quiet.metrics is None
    moved = with_overrides(
        inv,
        {
            "NIXMOX_NOTIFY_URLS": "json://127.0.0.1:9/x",
            "NIXMOX_METRICS_TEXTFILE": str(tmp_path / "m.prom"),
        },
    )
    assert moved.notify is not None and moved.notify.urls == ["json://127.0.0.1:9/x"]
    assert inv.notify is not None and moved.notify.on == inv.notify.on
    assert moved.metrics is not None and moved.metrics.textfile == str(tmp_path / "m.prom")


def _hook(tmp_path: Path, config: Path, prepare: str = "") -> subprocess.CompletedProcess[str]:
    """``nixmox unit-failed nixmox-backup.service`` (systemd's OnFailure= hook) with the
    state directory on a small tmpfs in a private mount namespace; ``prepare`` runs first."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = (
        f"mount -t tmpfs -o size=1m,mode=0700 tmpfs {mnt} && mkdir -m 700 {mnt}/state && "
        f"{prepare}{sys.executable} -m nixmox.cli.main unit-failed --config {config} "
        "nixmox-backup.service"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "NIXMOX_STATE_DIR": f"{mnt}/state"}
    env.pop("NIXMOX_NOTIFY_URLS", None)
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "prepare",
    ["mount -o remount,ro {mnt} && ", "head -c 2000000 /dev/zero > {mnt}/filler 2>/dev/null; "],
    ids=["read-only", "full"],
)
def test_the_failure_hook_notifies_when_the_journal_cannot_be_written(
    tmp_path: Path, prepare: str
) -> None:
    with receiver() as rec:
        config = inventory(tmp_path, textfile=None, urls=[rec.url])
        proc = _hook(tmp_path, config, prepare.format(mnt=tmp_path / "mnt"))
        assert proc.returncode == 0, proc.stderr
        [body] = rec.bodies
    assert body["title"] == "nixmox backup failed on pve1" and body["type"] == "failure"
    lines = body["message"].splitlines()
    assert lines[0].startswith("systemd unit nixmox-backup.service failed")
    assert "could not record it" in lines[1], lines
    assert "could not record it" in proc.stderr and "Traceback" not in proc.stderr


def test_the_failure_hook_notifies_a_unit_whose_run_never_told(tmp_path: Path) -> None:
    # A unit killed (its timeout, SIGKILL) never finished its run: the hook is the only word.
    with receiver() as rec:
        config = inventory(tmp_path, textfile=None, urls=[rec.url])
        proc = _hook(tmp_path, config)
        assert proc.returncode == 0, proc.stderr
        [body] = rec.bodies
    assert body["message"].splitlines() == [body["message"].splitlines()[0]]  # recorded: no more


def test_the_failure_hook_is_silent_after_its_run_told(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with receiver() as rec:
        inv = load_inventory(inventory(tmp_path, textfile=None, urls=[rec.url]))
        with observed_run(inv, "backup", state) as run:
            run.result, run.summary = "failed", FAILED
        assert len(rec.bodies) == 1  # the run's own
        proc = _unit_failed(tmp_path, state, rec.url)
        assert proc.returncode == 0, proc.stderr
        assert len(rec.bodies) == 1  # not a second time


def _state_env(state: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "NIXMOX_STATE_DIR": str(state)}
    env.pop("NIXMOX_NOTIFY_URLS", None)
    return env


def _unit_failed(tmp_path: Path, state: Path, url: str) -> subprocess.CompletedProcess[str]:
    """The OnFailure= hook for nixmox-backup.service, as systemd runs it, on ``state``."""
    config = inventory(tmp_path, textfile=None, urls=[url])
    argv = ["unit-failed", "--config", str(config), "nixmox-backup.service"]
    return subprocess.run(
        [sys.executable, "-m", "nixmox.cli.main", *argv],
        env=_state_env(state),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_failure_hook_notifies_a_run_that_was_killed_mid_way(tmp_path: Path) -> None:
    # SIGKILL (systemd's stop timeout, the OOM killer) leaves the run open; the hook's
    # own open of the journal closes it as interrupted, but that run told nobody.
    state = tmp_path / "state"
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, signal, sys; from pathlib import Path; "
            "from nixmox.adapters.journal import Journal; "
            "Journal(Path(sys.argv[1])).start('backup'); os.kill(os.getpid(), signal.SIGKILL)",
            str(state),
        ],
        env=_state_env(state),
        timeout=60,
    )
    assert killed.returncode == -9
    with receiver() as rec:
        proc = _unit_failed(tmp_path, state, rec.url)
        assert proc.returncode == 0, proc.stderr
        [body] = rec.bodies
    assert body["title"] == "nixmox backup failed on pve1"
    journal = Journal(state)
    try:
        [backup] = journal.runs("backup")
    finally:
        journal.close()
    assert backup.result == "interrupted" and "killed?" in backup.summary["error"]


def test_the_run_that_told_is_the_failed_units_own_process(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with receiver() as rec:
        inv = load_inventory(inventory(tmp_path, textfile=None, urls=[rec.url]))
        with observed_run(inv, "backup", state) as run:
            run.result, run.summary = "failed", FAILED
    unit = {"unit": "nixmox-backup.service"}
    later = time.time() + 3600  # however long after, the process tells
    assert told_by_its_run({**unit, "execmainpid": str(os.getpid())}, state, later)
    # Another process of the unit failed (before it could journal): the older run's
    # notification was about something else.
    assert not told_by_its_run({**unit, "execmainpid": "1"}, state, time.time())
