"""Notifications delivered by the real apprise to a real HTTP endpoint on loopback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from nixmox.core.log import mask
from nixmox.inventory.load import load_inventory
from nixmox.runtime.run import observed_run
from tests.observe_support import inventory, receiver

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
