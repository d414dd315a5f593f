"""`nixmox status` and the job wiring against the lab: one API pass, journal fallback."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nixmox.cli import observe as observe_command
from nixmox.cli.main import run
from tests.clock import FakeClock
from tests.lab.serving import RunningLab
from tests.observe_support import inventory, receiver


@pytest.fixture
def env(lab_env: RunningLab) -> RunningLab:
    """The shared lab environment, seeded with the example's guests."""
    lab_env.pve.add_declared_guests()
    return lab_env


def status_json(capsys: pytest.CaptureFixture[str], config: Path) -> tuple[int, dict[str, Any]]:
    code = run(["status", "--json", "--config", str(config)])
    return code, json.loads(capsys.readouterr().out)


def test_backup_run_feeds_metrics_notification_history_and_status(
    env: RunningLab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    yesterday = datetime.now() - timedelta(days=1)
    for vmid, kind in ((100, "lxc"), (101, "qemu"), (102, "qemu")):
        env.pve.seed_backup("backups", vmid, kind, yesterday)
    env.pve.fail_backup(101, "unable to access disk: Input/output error")
    prom = tmp_path / "nixmox.prom"
    with receiver() as rec:
        config = inventory(tmp_path, textfile=prom, urls=[rec.url])
        assert (
            run(["backup", "--config", str(config), "--guest", "nixos-lxc", "--guest", "nixos-vm"])
            == 1
        )
        [msg] = rec.bodies
        assert msg["title"] == "nixmox backup failed on pve1"
        assert "nixos-vm: " in msg["message"] and "Input/output error" in msg["message"]
        capsys.readouterr()
        env.pve.clear_backup_failures()
        assert run(["backup", "--config", str(config), "--guest", "nixos-vm"]) == 0
        assert rec.bodies[1]["title"] == "nixmox backup recovered on pve1"
    samples = {
        (s.name, s.labels.get("id")): s.value
        for f in text_string_to_metric_families(prom.read_text())
        for s in f.samples
    }
    assert samples[("nixmox_job_last_run_success", None)] == 1
    assert samples[("nixmox_guest_backup_newest_size_bytes", "qemu/101")] > 0
    capsys.readouterr()

    code, report = status_json(capsys, config)
    assert code == 0, report  # the last backup run succeeded; nothing doctor FAILs
    guests = {g["name"]: g for g in report["guests"]}
    assert guests["nixos-vm"]["state"] == "running" and guests["nixos-vm"]["node"] == "pve1"
    assert guests["nixos-vm"]["backup_from"] == "api"
    assert guests["nixos-vm"]["pending_changes"] == 0
    assert (datetime.now().timestamp() - guests["nixos-vm"]["backup_time"]) < 3600
    assert [j["job"] for j in report["jobs"]] == ["backup"]
    assert report["doctor"]["areas"] == ["proxmox", "guests", "backups"]
    # One pass: /version, /cluster/resources, 3 pending, 1 agent ping, 1 storage listing.
    assert report["requests"] <= 8, report["requests"]

    assert run(["status", "--config", str(config)]) == 0
    text = capsys.readouterr().out
    assert "Proxmox API reachable" in text and "doctor (proxmox, guests, backups)" in text
    # Times in the inventory's zone, named, as the archives' names are in local time.
    assert report["timezone"] == "Europe/Vienna"
    vienna = ZoneInfo("Europe/Vienna")
    header = datetime.fromtimestamp(report["now"], vienna).strftime("%Y-%m-%d %H:%M")
    assert re.match(rf"nixmox status at {header}:\d\d CES?T: ", text), text
    backup = datetime.fromtimestamp(guests["nixos-vm"]["backup_time"], vienna)
    [row] = [line for line in text.splitlines() if line.startswith("nixos-vm ")]
    assert backup.strftime("%Y-%m-%d %H:%M %Z") in row
    assert run(["history", "--job", "backup", "--config", str(config)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "ok" in table[1] and "1 guest backed up" in table[1]
    assert "failed" in table[2] and "1 failed: nixos-vm" in table[2]
    assert run(["history", "--job", "backup", "--json"]) == 0
    started = json.loads(capsys.readouterr().out)[0]["started"]
    shown = datetime.fromtimestamp(started, vienna).strftime("%Y-%m-%d %H:%M:%S %Z")
    assert table[1].startswith(shown + "  backup  ok")


def test_status_without_the_api_still_reads_the_journal(
    env: RunningLab,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = inventory(tmp_path, textfile=tmp_path / "m.prom", urls=[])
    env.pve.seed_backup("backups", 100, "lxc", datetime.now() - timedelta(hours=2))
    assert run(["backup", "--config", str(config), "--guest", "nixos-lxc"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("NIXMOX_PVE_URL", "https://127.0.0.1:9")  # nothing listens there
    # The retries' pauses pass on a fake clock (which starts now: the ages stay real).
    clock = FakeClock(start=datetime.now(UTC))
    code = observe_command.status(config, as_json=True, clock=clock)
    report = json.loads(capsys.readouterr().out)
    assert code == 2
    assert report["api"]["reachable"] is False and "cannot connect to" in report["api"]["error"]
    assert clock.slept == [0.5, 1.0, 2.0]  # asked 4 times, backing off, before giving up
    ct = next(g for g in report["guests"] if g["name"] == "nixos-lxc")
    assert ct["backup_from"] == "journal" and ct["backup_time"]
    assert report["jobs"][0]["result"] == "ok"
    assert observe_command.status(config, as_json=False, clock=clock) == 2
    out = capsys.readouterr().out
    assert "Proxmox API UNREACHABLE" in out and "(journal)" in out


def test_status_shows_what_doctor_fails_on_the_host(
    env: RunningLab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.hosts import VARIANTS, HostSpec, write_host

    config = inventory(tmp_path, textfile=None, urls=[])
    # Away from the node (this machine is not pve1), the host checks are not run ...
    code, report = status_json(capsys, config)
    assert "passthrough" not in report["doctor"]["areas"]
    # ... with the node's files, they are, and the GPU held by nouveau shows.
    bad = write_host(tmp_path / "host", VARIANTS["gpu-on-nouveau"][0](HostSpec()))
    code = run(["status", "--json", "--host-root", str(bad), "--config", str(config)])
    report = json.loads(capsys.readouterr().out)
    assert code == 2
    assert {"host", "passthrough"} <= set(report["doctor"]["areas"])
    assert any(
        c["id"] == "host-driver" and c["status"] == "FAIL" for c in report["doctor"]["checks"]
    )


def test_status_shows_a_nodes_held_reboot_from_update_host(
    env: RunningLab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.observe_support import record

    config = inventory(tmp_path, textfile=None, urls=[])
    row = {"guest": "pve1", "vmid": None, "result": "held", "rolled_back": False, "pending": 1}
    record(tmp_path / "state", "update host", "ok", {"guests": [row], "pending": {"pve1": 1}})
    _, report = status_json(capsys, config)
    assert report["nodes"] == [{"name": "pve1", "pending_updates": 1, "last_update": "ok"}]
    assert report["jobs"] == [
        {"job": "update host", "ended": report["jobs"][0]["ended"], "result": "ok",
         "summary": "0 nodes updated, 1 held"}
    ]  # fmt: skip
    run(["status", "--config", str(config)])
    out = capsys.readouterr().out.splitlines()
    assert out[out.index(next(ln for ln in out if ln.startswith("node "))) + 1].split() == [
        "pve1",
        "last",
        "update",
        "ok,",
        "1",
        "pending",
    ]


def test_status_is_unknown_when_it_cannot_see_the_cluster(
    env: RunningLab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = inventory(tmp_path, textfile=tmp_path / "m.prom", urls=[])
    for vmid, kind in ((100, "lxc"), (101, "qemu"), (102, "qemu")):
        env.pve.seed_backup("backups", vmid, kind, datetime.now() - timedelta(hours=2))
    code, report = status_json(capsys, config)
    assert code == 0 and {g["state"] for g in report["guests"]} <= {"running", "stopped"}
    env.pve.fail("GET", "/cluster/resources", 500, "cluster filesystem not ready")
    code, report = status_json(capsys, config)
    assert code == 3, report["doctor"]
    assert (
        report["exit_code"] == 3
        and "cluster filesystem not ready" in report["api"]["cluster_error"]
    )
    assert {g["state"] for g in report["guests"]} == {"unknown"}  # not "missing"
    assert run(["status", "--config", str(config)]) == 3
    assert "guests are UNKNOWN" in capsys.readouterr().out


def test_status_says_cannot_see_for_guests_the_token_may_not_audit(
    env: RunningLab,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = inventory(tmp_path, textfile=tmp_path / "m.prom", urls=[])
    token = "watcher@pve!status"
    env.pve.apitokens[token] = "status-secret-1234"
    env.pve.acl = {}
    for who in (token.split("!")[0], token):
        env.pve.grant(who, "/vms/100", "VM.Audit")
        env.pve.grant(who, "/vms/102", "VM.Audit")
    monkeypatch.delenv("NIXMOX_PVE_USER", raising=False)
    monkeypatch.setenv("NIXMOX_PVE_TOKEN_ID", token)
    monkeypatch.setenv("NIXMOX_PVE_TOKEN", "status-secret-1234")
    env.pve.cts = [ct for ct in env.pve.cts if ct.vmid != 100]  # really gone
    _code, report = status_json(capsys, config)
    states = {g["id"]: g["state"] for g in report["guests"]}
    assert states == {"lxc/100": "missing", "qemu/101": "cannot see", "qemu/102": "stopped"}
    run(["status", "--config", str(config)])
    assert "cannot see" in capsys.readouterr().out


def test_status_shows_the_pools_and_disks_the_pool_runs_recorded(
    env: RunningLab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nixmox.adapters.journal import state_dir
    from tests.observe_support import record
    from tests.pool_support import GROWING, TIB, capacity_run, scrub_summary, tank_check

    config = inventory(tmp_path, textfile=None, urls=[])
    history = (capacity_run(10, int(5.2 * TIB)),)
    record(state_dir(), "pool check", "ok", tank_check(datetime.now(UTC), history=history))
    record(state_dir(), "pool scrub", "ok", scrub_summary("tank", repaired=4096))
    code, report = status_json(capsys, config)
    [pool] = report["pools"]
    assert (pool["pool"], pool["state"], pool["capacity"]) == ("tank", "DEGRADED", 75.0)
    assert pool["scrub_outcome"] == "finished" and pool["scrub_repaired"] == 4096
    assert pool["forecast"].startswith("at the last 10 days' rate (+1.00%/day), 90% in 1")
    assert len(report["disks"]) == 5 and all(d["healthy"] for d in report["disks"])
    assert [j["job"] for j in report["jobs"]] == ["pool check", "pool scrub"]
    # The lab's guests have no backups (doctor FAILs that); pool findings are no part of it
    # away from the node (doctor's pools area runs there, or with --host-root).
    assert code == 2 and "pools" not in report["doctor"]["areas"]
    assert not [c for c in report["doctor"]["checks"] if c["id"].startswith(("pool-", "disk-"))]
    assert run(["status", "--config", str(config)]) == 2
    text = capsys.readouterr().out.splitlines()
    [line] = [t for t in text if t.startswith("tank ")]
    assert "DEGRADED" in line and "75%" in line and "4096 B repaired" in line
    assert "90% in 1" in line
    [disk] = [t for t in text if t.startswith(GROWING)]
    assert disk.split()[1] == "tank" and "8 reallocated" in disk
    jobs = {t.split()[0] + " " + t.split()[1]: t for t in text if t.startswith("pool ")}
    assert "1 pool and 5 disks read, 4 findings" in jobs["pool check"]  # the forecast too
    assert "1 pool scrubbed, 0 errors, 4096 B repaired" in jobs["pool scrub"]
