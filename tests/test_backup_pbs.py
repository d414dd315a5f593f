"""Backups to a Proxmox Backup Server storage (issue 21): the lab answers as PVE does for a
pbs storage (PBSPlugin volume names, listing, protection, forget), nixmox prunes each guest's
group with the keep-* rule, verifies and restores from it, and reports it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.settings import Connection
from nixmox.backup.archives import all_archives, archives_of, parse_volid
from nixmox.backup.job import archive_volid
from nixmox.cli.main import run
from nixmox.core.errors import NixmoxError
from nixmox.inventory.checks import check
from nixmox.inventory.model import Inventory
from nixmox.rules.retention import Item, Keep, Mark, prune
from tests.lab.serving import RunningLab
from tests.observe_support import inventory

VIENNA = ZoneInfo("Europe/Vienna")
KEEP = Keep(last=3, daily=7, weekly=4, monthly=6)  # the example's [backups.keep]
PBS = {
    "storage": "pbs",
    "type": "pbs",
    "server": "127.0.0.1",
    "datastore": "homelab",
    "fingerprint": "AA:" * 31 + "AA",
    "username": "backup@pbs!pve1",
    "content": ["backup"],
}
STORAGE_TOML = """
[[storages]]
storage = "pbs"
type = "pbs"
server = "127.0.0.1"
datastore = "homelab"
fingerprint = "{fp}"
username = "backup@pbs!pve1"
content = ["backup"]
""".format(fp=PBS["fingerprint"])


@pytest.fixture
def env(lab_env: RunningLab) -> RunningLab:
    """The lab with the example's guests and a pbs storage next to the example's."""
    lab_env.pve.add_declared_guests()
    lab_env.pve.add_storage(PBS)
    return lab_env


def pbs_inventory(tmp: Path, *, textfile: Path | None = None) -> Path:
    """The example inventory with [backups] storage = the pbs storage."""
    path = inventory(tmp, textfile=textfile, urls=[])
    text = path.read_text().replace('[backups]\nstorage = "backups"', '[backups]\nstorage = "pbs"')
    assert 'storage = "pbs"' in text
    path.write_text(text.replace("\n[[storages]]\n", STORAGE_TOML + "\n[[storages]]\n", 1))
    return path


def listing(env: RunningLab, vmid: int | None = None) -> list[dict[str, Any]]:
    """The pbs storage's backup content as the API lists it."""
    api = Proxmox(Connection(env.url, env.token_id, env.token, env.ca_file))
    rows: list[dict[str, Any]] = api.get(
        "/nodes/pve1/storage/pbs/content",
        content="backup",
        **({"vmid": vmid} if vmid is not None else {}),
    )
    return rows


def backup_json(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> Any:
    code = run(["backup", "--json", "--config", str(config), *args])
    return code, json.loads(capsys.readouterr().out)


# -- pure -----------------------------------------------------------------------------


def test_pbs_volids_are_read_in_utc_and_grouped_per_guest() -> None:
    parsed = parse_volid("pbs:backup/vm/101/2026-12-04T02:00:00Z", VIENNA)
    assert parsed == ("qemu", 101, datetime(2026, 12, 4, 2, 0, tzinfo=UTC))
    assert parse_volid("pbs:backup/ct/100/2026-12-04T02:00:00Z", VIENNA)[:2] == ("lxc", 100)  # type: ignore[index]
    for other in (
        "pbs:backup/host/pve1/2026-12-04T02:00:00Z",  # a host backup: no guest's
        "pbs:backup/vm/101/2026-12-04T02:00:00",  # not PBS's UTC form
        "pbs:backup/vm/101/2026-13-04T02:00:00Z",  # no such month
    ):
        assert parse_volid(other, VIENNA) is None
    rows = [
        {"volid": "pbs:backup/vm/101/2026-12-04T02:00:00Z", "ctime": 1, "format": "pbs-vm"},
        {"volid": "pbs:backup/ct/101/2026-12-05T02:00:00Z", "format": "pbs-ct"},
        {"volid": "pbs:backup/vm/102/2026-12-06T02:00:00Z", "protected": 1},
    ]
    found = all_archives(rows, VIENNA)
    # ctime wins over the name, as for file archives; vm/101 and ct/101 are different groups.
    assert [a.volid.split(":", 1)[1] for a in archives_of(rows, 101, "qemu", VIENNA)] == [
        "backup/vm/101/2026-12-04T02:00:00Z"
    ]
    assert found[-1].time.timestamp() == 1 and found[0].kind == "qemu" and found[0].protected


def test_the_job_reads_the_pbs_snapshot_from_vzdumps_log() -> None:
    log = [
        "INFO: starting new backup job: vzdump 101 --storage pbs",
        "INFO: creating Proxmox Backup Server archive 'vm/101/2026-12-04T02:00:03Z'",
    ]
    assert archive_volid(log, "pbs") == "pbs:backup/vm/101/2026-12-04T02:00:03Z"
    file_log = [
        "INFO: creating vzdump archive '/b/dump/vzdump-lxc-100-2026_12_04-02_00_00.tar.zst'"
    ]
    assert archive_volid(file_log, "b") == "b:backup/vzdump-lxc-100-2026_12_04-02_00_00.tar.zst"
    assert archive_volid(["INFO: Finished Backup of VM 101"], "pbs") is None


def test_a_pbs_storage_needs_its_server_and_datastore() -> None:
    base = {"nodes": [{"name": "pve1"}]}

    def problems(storage: dict[str, Any]) -> list[str]:
        inv = Inventory.model_validate({**base, "storages": [storage]})
        return [p.message for p in check(inv)]

    assert problems(PBS) == []
    assert problems({"storage": "pbs", "type": "pbs"}) == [
        'a pbs storage needs server = "..."',
        'a pbs storage needs datastore = "..."',
    ]
    assert problems({**PBS, "content": ["backup", "images"]}) == [
        'a pbs storage holds only content = ["backup"]'
    ]
    assert problems({"storage": "b", "type": "dir", "path": "/b", "datastore": "x"}) == [
        "datastore is for a pbs storage only"
    ]


# -- against the lab ------------------------------------------------------------------


def test_the_lab_answers_as_a_pbs_storage_does(env: RunningLab) -> None:
    pve = env.pve
    volid = pve.seed_backup("pbs", 101, "qemu", datetime(2026, 11, 20, 2, 30, tzinfo=VIENNA))
    assert volid == "pbs:backup/vm/101/2026-11-20T01:30:00Z"
    [row] = listing(env, 101)
    assert row["format"] == "pbs-vm" and row["subtype"] == "qemu" and "protected" not in row
    api = Proxmox(Connection(env.url, env.token_id, env.token, env.ca_file))
    path = f"/nodes/pve1/storage/pbs/content/{volid}"
    api.put(path, protected=1)
    assert listing(env, 101)[0]["protected"] == 1
    with pytest.raises(NixmoxError, match="cannot remove protected volume"):
        upid = api.delete(path)
        from nixmox.adapters.proxmox.tasks import wait

        wait(api, upid, what="remove")
    api.put(path, protected=0)
    assert "protected" not in listing(env, 101)[0]
    with pytest.raises(NixmoxError, match="unable to parse PBS volume name"):
        api.delete("/nodes/pve1/storage/pbs/content/pbs:backup/vzdump-qemu-101-x.vma")


def test_backup_to_pbs_prunes_each_group_exactly_and_keeps_protected_snapshots(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pve = env.pve
    config = pbs_inventory(tmp_path)
    start = datetime(2026, 11, 20, 2, 30, tzinfo=VIENNA)
    for vmid, kind in ((100, "lxc"), (101, "qemu")):
        for d in range(1, 41):
            pve.seed_backup("pbs", vmid, kind, start - timedelta(days=d))
    protected = pve.seed_backup("pbs", 101, "qemu", datetime(2026, 9, 1, 2, 30), protected=True)
    foreign = pve.seed_backup("pbs", 555, "qemu", datetime(2026, 8, 1, 2, 30))
    before = {vmid: {r["volid"] for r in listing(env, vmid)} for vmid in (100, 101)}

    code, report = backup_json(capsys, config, "--guest", "nixos-lxc", "--guest", "nixos-vm")
    assert code == 0, report
    for row, (vmid, kind) in zip(report["guests"], ((100, "lxc"), (101, "qemu")), strict=True):
        group = "ct" if kind == "lxc" else "vm"
        new = row["archive"]
        assert new.startswith(f"pbs:backup/{group}/{vmid}/") and new.endswith("Z")
        assert new not in before[vmid]
        # The survivors are exactly the keep-* rule's over the group's snapshots and the new one.
        archives = archives_of(
            [
                {"volid": v, **({"protected": 1} if v == protected else {})}
                for v in {*before[vmid], new}
            ],
            vmid,
            kind,
            VIENNA,
        )
        decisions = prune([Item(a.time, a.protected, a.volid) for a in archives], KEEP, VIENNA)
        kept = {d.item.ref for d in decisions if d.mark is not Mark.REMOVE}
        assert {r["volid"] for r in listing(env, vmid)} == kept
        assert set(row["removed"]) == {*before[vmid], new} - kept and row["removed"]
    assert protected in {r["volid"] for r in listing(env, 101)}
    assert foreign in {r["volid"] for r in listing(env, 555)}
    # vzdump went to the pbs storage; nixmox, not vzdump, pruned.
    dumps = [r for r in pve.requests if r[0] == "POST" and r[1].endswith("/vzdump")]
    assert dumps and all(b"storage=pbs" in r[2] for r in dumps)


def test_protected_new_snapshot_and_verify_and_restore_from_pbs(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = pbs_inventory(tmp_path)
    code, report = backup_json(capsys, config, "--protected")
    assert code == 0, report
    vm = next(r for r in report["guests"] if r["vmid"] == 101)
    row = next(r for r in listing(env, 101) if r["volid"] == vm["archive"])
    assert row["protected"] == 1 and row["notes"] == "nixos-vm (nixmox)"

    code = run(["backup", "verify", "--json", "--config", str(config)])
    verified = json.loads(capsys.readouterr().out)
    assert code == 0, verified
    assert [g["ok"] for g in verified["guests"]] == [True, True, True]
    assert {g["archive"].split("/")[1] for g in verified["guests"]} == {"vm", "ct"}
    assert all(g["archive"].startswith("pbs:backup/") for g in verified["guests"])
    restores = [
        r
        for r in env.pve.requests
        if r[0] == "POST" and r[1] in ("/api2/json/nodes/pve1/qemu", "/api2/json/nodes/pve1/lxc")
    ]
    assert len(restores) == 3 and all(b"pbs%3Abackup%2F" in r[2] for r in restores)
    assert 9900 not in {g.vmid for g in [*env.pve.vms, *env.pve.cts]}


def test_status_metrics_and_doctor_report_pbs_backups(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    prom = tmp_path / "nixmox.prom"
    config = pbs_inventory(tmp_path, textfile=prom)
    assert run(["backup", "--config", str(config), "--guest", "nixos-vm"]) == 0
    capsys.readouterr()
    [row] = listing(env, 101)
    samples = {
        (s.name, s.labels.get("id")): s.value
        for f in text_string_to_metric_families(prom.read_text())
        for s in f.samples
    }
    assert samples[("nixmox_guest_backup_newest_timestamp_seconds", "qemu/101")] == row["ctime"]
    assert samples[("nixmox_guest_backup_newest_size_bytes", "qemu/101")] == row["size"]

    # Doctor's part of status FAILs the two guests never backed up to pbs (exit 2).
    assert run(["status", "--json", "--config", str(config)]) == 2
    report = json.loads(capsys.readouterr().out)
    guests = {g["name"]: g for g in report["guests"]}
    assert guests["nixos-vm"]["backup_from"] == "api"
    assert guests["nixos-vm"]["backup_time"] == row["ctime"]
    fresh = {
        c["subject"]: c["status"] for c in report["doctor"]["checks"] if c["id"] == "backup-fresh"
    }
    assert fresh == {"nixos-lxc (100)": "FAIL", "win11-gaming (102)": "FAIL"}, fresh


def test_plan_finds_a_pbs_storage_as_declared_and_would_create_a_missing_one(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = pbs_inventory(tmp_path)
    run(["plan", "--json", "--config", str(config)])
    plan = json.loads(capsys.readouterr().out)
    assert next(s for s in plan["storages"] if s["name"] == "pbs")["action"] == "none", plan
    del env.pve.storages["pbs"]
    run(["plan", "--json", "--config", str(config)])
    plan = json.loads(capsys.readouterr().out)
    [create] = [s for s in plan["storages"] if s["name"] == "pbs"]
    assert create["action"] == "create"
    assert "datastore" in json.dumps(create) and "password" not in json.dumps(create)


def test_restore_brings_a_destroyed_guest_back_from_pbs(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = pbs_inventory(tmp_path)
    code, report = backup_json(capsys, config, "--guest", "nixos-lxc")
    assert code == 0, report
    [archive] = [r["archive"] for r in report["guests"]]
    assert archive.startswith("pbs:backup/ct/100/")
    before = dict(env.pve.guest(100).config)
    env.pve.cts.remove(env.pve.guest(100))  # the boot disk died with the guest on it
    code = run(["restore", "nixos-lxc", "--json", "--yes", "--config", str(config)])
    restored = json.loads(capsys.readouterr().out)
    assert code == 0, restored
    posts = [r for r in env.pve.requests if r[0] == "POST" and r[1].endswith("/nodes/pve1/lxc")]
    assert posts and b"pbs%3Abackup%2Fct%2F100%2F" in posts[-1][2]
    after = env.pve.guest(100).config
    for key in ("hostname", "cores", "memory"):
        assert after[key] == before[key], key


def test_a_pbs_namespace_and_port_are_declared_planned_and_applied(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = pbs_inventory(tmp_path)
    text = config.read_text().replace(
        'datastore = "homelab"\n', 'datastore = "homelab"\nnamespace = "hosts/pve1"\nport = 8007\n'
    )
    config.write_text(text)
    run(["plan", "--json", "--config", str(config)])
    plan = json.loads(capsys.readouterr().out)
    [pbs] = [s for s in plan["storages"] if s["name"] == "pbs"]
    assert pbs["action"] == "update" and "hosts/pve1" in json.dumps(pbs), pbs
    assert run(["apply", "--yes", "--config", str(config)]) == 0, capsys.readouterr()
    capsys.readouterr()
    stored = env.pve.storages["pbs"]
    assert stored["namespace"] == "hosts/pve1" and str(stored["port"]) == "8007"
    run(["plan", "--json", "--config", str(config)])
    plan = json.loads(capsys.readouterr().out)
    assert next(s for s in plan["storages"] if s["name"] == "pbs")["action"] == "none"


def test_a_pbs_namespace_is_checked_where_it_is_written() -> None:
    base = {"nodes": [{"name": "pve1"}]}
    ok = Inventory.model_validate({**base, "storages": [{**PBS, "namespace": "a/b.c/d-e"}]})
    assert check(ok) == []
    for bad in ("/root", "a//b", "-x", "a/" * 8 + "a", "sp ace"):
        with pytest.raises(ValidationError):
            Inventory.model_validate({**base, "storages": [{**PBS, "namespace": bad}]})
    dir_store = {"storage": "b", "type": "dir", "path": "/b", "namespace": "x"}
    inv = Inventory.model_validate({**base, "storages": [dir_store]})
    assert [p.message for p in check(inv)] == ["namespace is for a pbs storage only"]
