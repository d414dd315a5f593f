"""The storage, snapshots, backups, host and guests areas, and `nixmox doctor` end to end."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nixmox.adapters.hostfacts import HostFacts
from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.settings import connection
from nixmox.adapters.runner import Runner
from nixmox.adapters.zfs import PoolStatus, Zfs, Zpool, zpool_command
from nixmox.backup.archives import parse_volid
from nixmox.cli.main import run
from nixmox.core.verdict import Check, Status
from nixmox.doctor.backups_area import backup_period, check_backups
from nixmox.doctor.host_area import allocation_checks, check_host
from nixmox.doctor.storage_area import check_snapshots, check_storage, pool_checks
from nixmox.inventory.load import load_inventory
from nixmox.inventory.model import Guest, Inventory, Pool
from nixmox.rules.oncalendar import longest_gap, parse_calendar
from nixmox.snapshot.policy import snapshot_name
from tests.hosts import HostSpec, write_host
from tests.lab.serving import RunningLab
from tests.peers.zfs import ZfsFuse

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "homelab.toml"


def statuses(checks: list[Check], check_id: str) -> dict[str, Status]:
    return {c.subject: c.status for c in checks if c.id == check_id}


@pytest.fixture
def api(lab_env: RunningLab) -> Proxmox:
    return Proxmox(connection(load_inventory(EXAMPLE).proxmox))


def inventory(tmp_path: Path, text: str) -> Inventory:
    path = tmp_path / "nixmox.toml"
    path.write_text(text)
    return load_inventory(path)


# -- storage and snapshots on zfs-fuse ---------------------------------------------


def test_storage_pools_datasets_and_storages(
    zfs: ZfsFuse, zfs_pool: str, tmp_path: Path, api: Proxmox
) -> None:
    zfs.zfs("create", f"{zfs_pool}/a")
    # Real data, so the pool's capacity is above the 1% threshold set below.
    mount = tmp_path / "fill"
    zfs.zfs("create", "-o", f"mountpoint={mount}", f"{zfs_pool}/fill")
    zfs.run("dd", "if=/dev/urandom", f"of={mount}/data", "bs=1M", "count=12")
    zfs.run("sync")
    zfs.zfs("umount", f"{zfs_pool}/fill")
    bin_dir = zfs.bin_dir
    inv = inventory(
        tmp_path,
        f"""
[zfs]
command = ["{bin_dir}/zfs"]
[[nodes]]
name = "pve1"
[[pools]]
name = "{zfs_pool}"
max_used_percent = 1
[[pools]]
name = "gone"
[[datasets]]
name = "{zfs_pool}/a"
[[datasets]]
name = "{zfs_pool}/b"
properties = {{ compression = "zstd" }}
[[storages]]
storage = "backups"
type = "dir"
path = "/rpool/backups"
content = ["backup"]
[[storages]]
storage = "media"
type = "dir"
path = "/tank/media"
content = ["iso"]
""",
    )
    runner = Runner()
    zpool = Zpool(runner, zpool_command(inv.zfs.command))
    checks = check_storage(inv, Zfs(runner, inv.zfs.command), zpool, api)
    assert statuses(checks, "pool-health") == {zfs_pool: Status.PASS, "gone": Status.FAIL}
    assert statuses(checks, "pool-capacity") == {zfs_pool: Status.WARN}
    assert statuses(checks, "dataset-exists") == {
        f"{zfs_pool}/a": Status.PASS,
        f"{zfs_pool}/b": Status.FAIL,
    }
    assert statuses(checks, "storage-exists") == {"backups": Status.PASS, "media": Status.WARN}
    assert statuses(checks, "storage-active") == {"backups on pve1": Status.PASS}
    fixes = {c.subject: c.fix for c in checks if c.status is not Status.PASS}
    assert f"`zfs create -p -o compression=zstd {zfs_pool}/b`" in fixes[f"{zfs_pool}/b"]
    assert "pvesm add dir media --path /tank/media --content iso" in fixes["media"]


def test_pool_verdicts_are_pure() -> None:
    found = [
        PoolStatus("rpool", "DEGRADED", "1.8T", "1.0T", "0.8T", 55),
        PoolStatus("tank", "ONLINE", "29T", "28T", "1T", 96),
    ]
    checks = pool_checks(found, [Pool(name="rpool"), Pool(name="tank", max_used_percent=85)])
    assert statuses(checks, "pool-health") == {"rpool": Status.WARN, "tank": Status.PASS}
    assert statuses(checks, "pool-capacity") == {"rpool": Status.PASS, "tank": Status.FAIL}


def test_snapshots_area_uses_each_policy(zfs: ZfsFuse, zfs_pool: str, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    ages = {"fresh": timedelta(minutes=30), "stale": timedelta(hours=5), "slow": timedelta(hours=5)}
    for ds, age in ages.items():
        zfs.zfs("create", f"{zfs_pool}/{ds}")
        zfs.zfs("snapshot", f"{zfs_pool}/{ds}@{snapshot_name(now - age)}")
    zfs.zfs("create", f"{zfs_pool}/none")
    inv = inventory(
        tmp_path,
        f"""
[zfs]
command = ["{zfs.bin_dir}/zfs"]
[snapshots.policies.hourly]
keep-hourly = 24
[snapshots.policies.lenient]
keep-hourly = 24
warn_after = "6h"
crit_after = "12h"
"""
        + "".join(
            f'[[snapshots.datasets]]\ndataset = "{zfs_pool}/{ds}"\npolicy = "{policy}"\n'
            for ds, policy in (("fresh", "hourly"), ("stale", "hourly"), ("none", "hourly"))
        )
        + f'[[snapshots.datasets]]\ndataset = "{zfs_pool}/slow"\npolicy = "lenient"\n',
    )
    checks = check_snapshots(inv, Zfs(Runner(), inv.zfs.command), now)
    assert [c.status for c in checks] == [Status.PASS, Status.FAIL, Status.FAIL, Status.PASS]
    assert "no nixmox snapshot" in checks[2].message
    assert "nixmox snapshot" in checks[1].fix


# -- backups against the lab ---------------------------------------------------------


def test_backups_old_fresh_and_missing(lab_env: RunningLab, api: Proxmox) -> None:
    inv = load_inventory(EXAMPLE)
    lab_env.pve.add_declared_guests()
    now = datetime.now(UTC)
    lab_env.pve.seed_backup("backups", 100, "lxc", (now - timedelta(hours=3)).timestamp())
    lab_env.pve.seed_backup("backups", 101, "qemu", (now - timedelta(days=3)).timestamp())
    lab_env.pve.seed_backup("backups", 101, "qemu", (now - timedelta(days=9)).timestamp())
    # An LXC archive with VM 102's id is not VM 102's backup.
    lab_env.pve.seed_backup("backups", 102, "lxc", (now - timedelta(hours=1)).timestamp())
    checks = check_backups(inv, api, now)
    assert statuses(checks, "backup-fresh") == {
        "nixos-lxc (100)": Status.PASS,
        "nixos-vm (101)": Status.WARN,
        "win11-gaming (102)": Status.FAIL,
    }
    warn = next(c for c in checks if c.status is Status.WARN)
    assert "3 d old" in warn.message and "WARN after 2 d" in warn.message
    assert "nixmox backup --guest nixos-vm" in warn.fix


def test_backups_of_guests_not_created_yet_are_info(lab_env: RunningLab, api: Proxmox) -> None:
    checks = check_backups(load_inventory(EXAMPLE), api)
    assert {c.status for c in checks} == {Status.INFO}


def test_archive_names_and_schedule_periods() -> None:
    archive = parse_volid("backups:backup/vzdump-qemu-102-2026_01_31-02_30_00.vma.zst", UTC)
    assert archive == ("qemu", 102, datetime(2026, 1, 31, 2, 30, tzinfo=UTC))
    assert parse_volid("backups:backup/vzdump-qemu-102-2026_02_30-02_30_00.vma", UTC) is None
    assert parse_volid("local:iso/win11.iso", UTC) is None
    assert backup_period("*-*-* 02:30:00")[0] == timedelta(days=1)
    assert backup_period(None)[0] == timedelta(days=1)
    assert backup_period("Sun 06:00")[0] == timedelta(days=7)


@pytest.mark.parametrize(
    ("spec", "gap"),
    [
        ("hourly", timedelta(hours=1)),
        ("Mon..Fri 02:30", timedelta(days=3)),
        ("*-*-* 00,18:00", timedelta(hours=18)),
        ("*:0/15", timedelta(minutes=15)),
        ("2026-01-01 00:00", None),
    ],
)
def test_longest_gap(spec: str, gap: timedelta | None) -> None:
    assert longest_gap(parse_calendar(spec)) == gap


# -- host ------------------------------------------------------------------------------


def test_host_matches_the_inventory(tmp_path: Path) -> None:
    checks = check_host(load_inventory(EXAMPLE), write_host(tmp_path / "h"))
    assert {c.id for c in checks} >= {"host-cpu", "host-cores", "host-memory", "host-pci"}
    assert all(c.status is Status.PASS for c in checks), checks


def test_host_differences_are_named(tmp_path: Path) -> None:
    spec = HostSpec(cpu_model="AMD Ryzen 9 7950X 16-Core Processor", mem_total_kib=64 * 1024**2)
    spec.devices = [d for d in spec.devices if d.address != "0000:03:00.0"]
    spec.device("0000:01:00.1").class_code = "0x040100"
    checks = check_host(load_inventory(EXAMPLE), write_host(tmp_path / "h", spec))
    assert statuses(checks, "host-cpu") == {"pve1": Status.WARN}
    assert statuses(checks, "host-memory") == {"pve1": Status.WARN}
    assert statuses(checks, "host-pci") == {
        "pve1 0000:01:00.0": Status.PASS,
        "pve1 0000:01:00.1": Status.FAIL,
        "pve1 0000:03:00.0": Status.FAIL,
    }
    # Guests ask 28 GiB of 64: no overcommit.
    assert statuses(checks, "host-memory-allocation") == {"pve1": Status.PASS}


def test_overcommit_is_reported() -> None:
    facts = HostFacts(threads=8, mem_total_kib=16 * 1024**2)
    guests = [
        Guest(name="a", vmid=100, kind="vm", node="n", cores=6, memory=8192),
        Guest(name="b", vmid=101, kind="vm", node="n", cores=6, memory=8192),
    ]
    checks = allocation_checks(facts, guests, "n")
    assert statuses(checks, "host-cpu-allocation") == {"n": Status.INFO}
    assert statuses(checks, "host-memory-allocation") == {"n": Status.WARN}
    huge = [Guest(name="c", vmid=102, kind="vm", node="n", cores=16)]
    assert allocation_checks(facts, huge, "n")[0].status is Status.FAIL


# -- guests: agent and pending changes -------------------------------------------------


def doctor_json(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, object]]:
    code = run(["doctor", "--config", str(EXAMPLE), "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def by_id(report: dict[str, object], check_id: str) -> dict[str, str]:
    checks = report["checks"]
    assert isinstance(checks, list)
    return {c["subject"]: c["status"] for c in checks if c["id"] == check_id}


def test_guest_agent_and_pending_changes(
    lab_env: RunningLab, api: Proxmox, capsys: pytest.CaptureFixture[str]
) -> None:
    lab_env.pve.add_declared_guests()
    api.post("/nodes/pve1/qemu/101/config", memory=12288)
    lab_env.pve.fail(
        "POST", "/nodes/pve1/qemu/101/agent/ping", 500, "QEMU guest agent is not running"
    )
    code, report = doctor_json(capsys, "--only", "guests")
    assert by_id(report, "guest-agent") == {
        "nixos-vm (101)": "WARN",
        "win11-gaming (102)": "INFO",
    }
    assert by_id(report, "guest-pending") == {
        "nixos-lxc (100)": "PASS",
        "nixos-vm (101)": "WARN",
        "win11-gaming (102)": "PASS",
    }
    pending = next(
        c
        for c in report["checks"]
        if c["id"] == "guest-pending" and c["status"] == "WARN"  # type: ignore[attr-defined]
    )
    assert "memory 8192 -> 12288" in pending["message"] and "qm reboot 101" in pending["fix"]
    assert code == 1


# -- the whole command -----------------------------------------------------------------


def test_every_area_runs_against_the_lab_and_a_generated_host(
    lab_env: RunningLab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab_env.pve.add_declared_guests()
    host = write_host(tmp_path / "h")
    code, report = doctor_json(
        capsys,
        "--host-root",
        str(host),
        "--only",
        "passthrough",
        "--only",
        "host",
        "--only",
        "backups",
    )
    summary = report["summary"]
    assert isinstance(summary, dict)
    assert summary["areas"] == ["host", "passthrough", "backups"]
    assert set(by_id(report, "pci-api-match").values()) == {"PASS"}
    # No backups were made in the fresh lab: each existing guest FAILs.
    assert set(by_id(report, "backup-fresh").values()) == {"FAIL"}
    assert code == 2 and summary["FAIL"] == 3
    checks = report["checks"]
    assert isinstance(checks, list)
    assert all(set(c) == {"id", "status", "subject", "message", "fix"} for c in checks)


def test_text_output_has_fix_lines_and_totals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NIXMOX_PVE_URL", "https://127.0.0.1:9")
    monkeypatch.setenv("NIXMOX_PVE_TOKEN_ID", "root@pam!x")
    monkeypatch.setenv("NIXMOX_PVE_TOKEN", "secret")
    monkeypatch.delenv("NIXMOX_PVE_CA_FILE", raising=False)
    from tests.hosts import variant

    host = write_host(tmp_path / "h", variant("gpu-on-nouveau"))
    code = run(
        ["doctor", "--config", str(EXAMPLE), "--only", "passthrough", "--host-root", str(host)]
    )
    out = capsys.readouterr().out
    assert code == 2
    assert "FAIL    host-driver" in out and "fix: `echo 'blacklist nouveau'" in out
    assert "UNKNOWN pci-api-match" in out
    assert out.strip().splitlines()[-1].endswith("unknown")
    assert "not checked yet" not in out


def test_bad_host_root_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = run(["doctor", "--config", str(EXAMPLE), "--host-root", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and "--host-root" in err


def test_dir_storage_on_a_dataset_gets_proxmoxs_mount_guard(
    lab_env: RunningLab, api: Proxmox, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Issue 24 item 13: the example's backups storage is a dir on rpool/backups.
    pve = lab_env.pve
    pve.add_declared_guests()
    del pve.storages["backups"]["is_mountpoint"]  # added by hand, without the guard
    pve.unmounted.add("/rpool/backups")  # the dataset did not mount at boot
    inv = load_inventory(EXAMPLE)
    runner = Runner()
    zfs = Zfs(runner, inv.zfs.command)
    checks = check_storage(inv, zfs, Zpool(runner, zpool_command(inv.zfs.command)), api)
    [guard] = [c for c in checks if c.id == "storage-mountpoint"]
    assert guard.status is Status.WARN and guard.subject == "backups"
    assert "`pvesm set backups --is_mountpoint yes`" in guard.fix
    # Unguarded, a backup "succeeds" into the root file system under the mount point.
    assert run(["backup", "--config", str(EXAMPLE), "--guest", "nixos-lxc"]) == 0
    assert pve.root_fs_writes and pve.root_fs_writes[0][0] == "backups"
    capsys.readouterr()
    # The plan sets the guard; apply does it.
    assert run(["plan", "--json", "--config", str(EXAMPLE)]) in (0, 2)
    plan = json.loads(capsys.readouterr().out)
    [storage] = [o for o in plan["storages"] if o["name"] == "backups"]
    assert [(c["key"], c["new"]) for c in storage["changes"]] == [("is_mountpoint", "yes")]
    host = write_host(tmp_path / "host")
    assert run(["apply", "--yes", "--host-root", str(host), "--config", str(EXAMPLE)]) == 0, (
        capsys.readouterr()
    )
    assert pve.storages["backups"]["is_mountpoint"] == "yes"
    checks = check_storage(inv, zfs, Zpool(runner, zpool_command(inv.zfs.command)), api)
    assert statuses(checks, "storage-mountpoint") == {"backups": Status.PASS}
    assert statuses(checks, "storage-active")["backups on pve1"] is Status.FAIL
    # Guarded, the backup fails instead of filling the root file system.
    written = len(pve.root_fs_writes)
    assert run(["backup", "--config", str(EXAMPLE), "--guest", "nixos-lxc"]) == 1
    assert "directory is expected to be a mount point but is not mounted" in (
        capsys.readouterr().out
    )
    assert len(pve.root_fs_writes) == written
