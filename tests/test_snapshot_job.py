"""`nixmox snapshot` against real ZFS (zfs-fuse), over simulated weeks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from nixmox.adapters.journal import Journal
from nixmox.adapters.runner import Remote, Runner
from nixmox.adapters.zfs import Zfs
from nixmox.inventory.model import SnapshotPolicy, SnapshotTarget
from nixmox.rules.retention import Item, Keep, Mark, prune
from nixmox.snapshot.job import check_freshness, run_target
from nixmox.snapshot.policy import snapshot_name
from tests.peers.sshd import Sshd
from tests.peers.zfs import ZfsFuse

NIXMOX = str(Path(sys.executable).parent / "nixmox")
VIENNA = ZoneInfo("Europe/Vienna")
POLICY = SnapshotPolicy.model_validate(
    {"keep-last": 2, "keep-hourly": 3, "keep-daily": 4, "keep-weekly": 2}
)
FOREIGN = [
    "manual-before-upgrade",
    "autosnap_2026-03-01_00:00:00_daily",
    "syncoid_pve1_2026-03-01",
    "nixmox_2026-02-30T00:00:00Z",
]


@pytest.fixture
def lab_pool(zfs: ZfsFuse, zfs_pool: str) -> Iterator[str]:
    """A tree (ct with two container volumes) and a plain dataset, with foreign snapshots."""
    for ds in ("ct", "ct/subvol-100-disk-0", "ct/subvol-101-disk-0", "shared"):
        zfs.zfs("create", f"{zfs_pool}/{ds}")
    for name in FOREIGN:
        zfs.zfs("snapshot", f"{zfs_pool}/shared@{name}")
    zfs.zfs("snapshot", f"{zfs_pool}/ct/subvol-100-disk-0@__replicate_100-0_1700000000__")
    yield zfs_pool


def snapshots(zfs: ZfsFuse, dataset: str) -> list[str]:
    out = zfs.zfs(
        "list", "-H", "-o", "name", "-t", "snapshot", "-s", "createtxg", "-r", "-d", "1", dataset
    )
    return [line.split("@", 1)[1] for line in out.stdout.splitlines()]


def ours(names: list[str]) -> list[str]:
    return [n for n in names if n.startswith("nixmox_") and n not in FOREIGN]


def zfs_adapter(zfs: ZfsFuse, runner: Runner) -> Zfs:
    return Zfs(runner, [str(zfs.bin_dir / "zfs")])


def test_weeks_of_runs_keep_exactly_what_the_rule_keeps(zfs: ZfsFuse, lab_pool: str) -> None:
    tree = SnapshotTarget(dataset=f"{lab_pool}/ct", policy="p", recursive=True)
    plain = SnapshotTarget(dataset=f"{lab_pool}/shared", policy="p", recursive=False)
    # Every 7 hours for three weeks, across the 2026-03-29 DST change in Vienna.
    start = datetime(2026, 3, 16, 1, 0, tzinfo=UTC)
    times = [start + timedelta(hours=7 * i) for i in range(72)]
    held = snapshot_name(times[3] - timedelta(minutes=30))  # one of ours, held by someone
    zfs.zfs("snapshot", f"{lab_pool}/shared@{held}")
    zfs.zfs("hold", "keep", f"{lab_pool}/shared@{held}")
    for when in times:
        runner = Runner()
        adapter = zfs_adapter(zfs, runner)
        results = [run_target(adapter, t, POLICY, VIENNA, when) for t in (tree, plain)]
        assert all(r.ok for r in results), results
        removed = sum(len(d.removed) for r in results for d in r.datasets)
        # One listing and one snapshot per tree, one destroy per removed snapshot
        # (zfs-fuse has no batch destroy), and the feature probe when needed.
        probes = 1 if removed else 0
        assert len(runner.history) == 2 * 2 + removed + probes
    expected = prune([Item(t, False, snapshot_name(t)) for t in times], POLICY.rule(), VIENNA)
    survivors = [d.item.ref for d in expected if d.mark is Mark.KEEP]
    for ds in ("ct", "ct/subvol-100-disk-0", "ct/subvol-101-disk-0"):
        assert sorted(ours(snapshots(zfs, f"{lab_pool}/{ds}"))) == sorted(survivors), ds
    shared = snapshots(zfs, f"{lab_pool}/shared")
    # The held snapshot is protected; it uses no slot, so the rest match the rule too.
    assert sorted(n for n in ours(shared) if n != held) == sorted(survivors)
    assert held in shared
    for name in FOREIGN:
        assert name in shared
    assert "__replicate_100-0_1700000000__" in snapshots(zfs, f"{lab_pool}/ct/subvol-100-disk-0")
    zfs.zfs("release", "keep", f"{lab_pool}/shared@{held}")


def test_missing_dataset_fails_alone(zfs: ZfsFuse, lab_pool: str) -> None:
    runner = Runner()
    adapter = zfs_adapter(zfs, runner)
    now = datetime(2026, 5, 1, tzinfo=UTC)
    missing = run_target(
        adapter, SnapshotTarget(dataset=f"{lab_pool}/nope", policy="p"), POLICY, UTC, now
    )
    fine = run_target(
        adapter, SnapshotTarget(dataset=f"{lab_pool}/shared", policy="p"), POLICY, UTC, now
    )
    assert missing.error == f"dataset {lab_pool}/nope does not exist" and not missing.ok
    assert fine.ok and fine.taken == snapshot_name(now)


def test_failed_snapshot_means_nothing_is_pruned(zfs: ZfsFuse, lab_pool: str) -> None:
    ds = f"{lab_pool}/shared"
    old = [datetime(2026, 1, d, tzinfo=UTC) for d in range(1, 10)]
    for when in old:
        zfs.zfs("snapshot", f"{ds}@{snapshot_name(when)}")
    now = datetime(2026, 2, 1, tzinfo=UTC)
    zfs.zfs("snapshot", f"{ds}@{snapshot_name(now)}")  # the name this run will want: it fails
    before = snapshots(zfs, ds)
    result = run_target(
        zfs_adapter(zfs, Runner()),
        SnapshotTarget(dataset=ds, policy="p"),
        SnapshotPolicy.model_validate({"keep-last": 1}),
        UTC,
        now,
    )
    assert (
        not result.ok
        and "already exists" in (result.error or "")
        and "nothing pruned" in (result.error or "")
    )
    assert snapshots(zfs, ds) == before


def test_held_snapshot_is_never_destroyed(zfs: ZfsFuse, lab_pool: str) -> None:
    ds = f"{lab_pool}/shared"
    held = snapshot_name(datetime(2026, 1, 1, tzinfo=UTC))
    zfs.zfs("snapshot", f"{ds}@{held}")
    zfs.zfs("hold", "backup", f"{ds}@{held}")
    result = run_target(
        zfs_adapter(zfs, Runner()),
        SnapshotTarget(dataset=ds, policy="p"),
        SnapshotPolicy.model_validate({"keep-last": 1}),
        UTC,
        datetime(2026, 2, 1, tzinfo=UTC),
    )
    assert result.ok and result.datasets[0].held == 1 and result.datasets[0].removed == []
    assert held in snapshots(zfs, ds)
    zfs.zfs("release", "backup", f"{ds}@{held}")


BATCH_SHIM = """#!/bin/sh
# Stands in for OpenZFS: answers `zfs version` and splits `zfs destroy ds@a,b`
# into one zfs-fuse destroy per snapshot. Every call is logged.
echo "$*" >> "{log}"
if [ "$1" = version ]; then echo zfs-2.2.6-pve1; echo zfs-kmod-2.2.6-pve1; exit 0; fi
if [ "$1" = destroy ] && [ "$#" = 2 ] && case "$2" in *@*,*) true;; *) false;; esac; then
  ds=${{2%@*}}; rest=${{2#*@}}; rc=0
  old_ifs=$IFS; IFS=,
  for snap in $rest; do IFS=$old_ifs; "{real}" destroy "$ds@$snap" || rc=1; done
  exit $rc
fi
exec "{real}" "$@"
"""


def test_openzfs_batch_destroy_path(zfs: ZfsFuse, lab_pool: str, tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    shim = tmp_path / "zfs"
    shim.write_text(BATCH_SHIM.format(log=log, real=zfs.bin_dir / "zfs"))
    shim.chmod(0o755)
    ds = f"{lab_pool}/shared"
    for day in range(1, 11):
        zfs.zfs("snapshot", f"{ds}@{snapshot_name(datetime(2026, 1, day, tzinfo=UTC))}")
    runner = Runner()
    adapter = Zfs(runner, [str(shim)])
    assert adapter.batch_destroy
    result = run_target(
        adapter,
        SnapshotTarget(dataset=ds, policy="p"),
        SnapshotPolicy.model_validate({"keep-last": 2}),
        UTC,
        datetime(2026, 2, 1, tzinfo=UTC),
    )
    assert result.ok and len(result.datasets[0].removed) == 9
    destroys = [line for line in log.read_text().splitlines() if line.startswith("destroy")]
    assert len(destroys) == 1 and destroys[0].count(",") == 8
    assert ours(snapshots(zfs, ds)) == [
        snapshot_name(datetime(2026, 1, 10, tzinfo=UTC)),
        snapshot_name(datetime(2026, 2, 1, tzinfo=UTC)),
    ]
    # list + version probe + snapshot + one batch destroy
    assert len(runner.history) == 4


def test_batch_with_a_held_snapshot_falls_back_one_by_one(
    zfs: ZfsFuse, lab_pool: str, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    shim = tmp_path / "zfs"
    shim.write_text(BATCH_SHIM.format(log=log, real=zfs.bin_dir / "zfs"))
    shim.chmod(0o755)
    ds = f"{lab_pool}/shared"
    names = [snapshot_name(datetime(2026, 1, day, tzinfo=UTC)) for day in range(1, 5)]
    for name in names:
        zfs.zfs("snapshot", f"{ds}@{name}")
    adapter = Zfs(Runner(), [str(shim)])
    failed = adapter.destroy_snapshots(ds, names[:3])
    assert failed == []
    zfs.zfs("hold", "x", f"{ds}@{names[3]}")
    zfs.zfs("snapshot", f"{ds}@{names[0]}")
    failed = adapter.destroy_snapshots(ds, [names[0], names[3]])
    assert [n for n, _ in failed] == [names[3]] and "busy" in str(failed[0][1])
    assert ours(snapshots(zfs, ds)) == [names[3]]
    zfs.zfs("release", "x", f"{ds}@{names[3]}")


# -- the command, with faketime -------------------------------------------------


def write_inventory(path: Path, pool: str, extra: str = "") -> Path:
    path.write_text(f"""\
timezone = "Europe/Vienna"
[snapshots.policies.frequent]
keep-hourly = 3
keep-daily = 2
[snapshots.policies.archive]
keep-monthly = 2
warn_after = "2d"
crit_after = "4d"
[[snapshots.datasets]]
dataset = "{pool}/ct"
policy = "frequent"
recursive = true
[[snapshots.datasets]]
dataset = "{pool}/shared"
policy = "archive"
{extra}""")
    return path


def nixmox_at(when: str, zfs: ZfsFuse, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The clock starts at `when` and runs (a stopped clock makes libfaketime
    # refuse sleeps with EINVAL), so names may be a second or two later.
    env = zfs.env({**os.environ, "TZ": "UTC", "NIXMOX_STATE_DIR": str(state)})
    return subprocess.run(
        ["faketime", when, NIXMOX, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_command_under_faketime(
    zfs: ZfsFuse, lab_pool: str, tmp_path: Path, faketime_bin: str
) -> None:
    inv = write_inventory(tmp_path / "n.toml", lab_pool)
    state = tmp_path / "state"
    for when in (
        "2026-04-01 08:00:00",
        "2026-04-01 09:00:00",
        "2026-04-01 10:00:00",
        "2026-04-01 11:00:00",
    ):
        proc = nixmox_at(when, zfs, state, "snapshot", "--config", str(inv))
        assert proc.returncode == 0, proc.stderr
    # Hourly 3, daily 2: 11:00, 10:00, 09:00 by the hour (08:00 goes; one day).
    assert [n[:-4] for n in ours(snapshots(zfs, f"{lab_pool}/ct"))] == [
        "nixmox_2026-04-01T09:00",
        "nixmox_2026-04-01T10:00",
        "nixmox_2026-04-01T11:00",
    ]
    assert ours(snapshots(zfs, f"{lab_pool}/ct/subvol-101-disk-0")) == ours(
        snapshots(zfs, f"{lab_pool}/ct")
    )
    assert "ok" in proc.stdout and "2 of 2 snapshot targets ok" in proc.stdout
    runs = Journal(state).runs("snapshot")
    assert len(runs) == 4 and runs[0].result == "ok" and runs[0].summary["zfs_calls"] >= 4
    # Off a terminal, each tree's start and end are timestamped lines on stderr.
    removed = sum(len(d["removed"]) for d in runs[0].summary["targets"][0]["datasets"])
    told = [line.split(" ", 2)[2] for line in proc.stderr.splitlines() if line[:4] == "2026"]
    start = told.index(f"snapshotting {lab_pool}/ct")
    assert told[start + 1] == f"{lab_pool}/ct: nixmox_2026-04-01T11:00:00Z, {removed} removed", told


def test_dry_run_prints_the_commands_and_changes_nothing(
    zfs: ZfsFuse, lab_pool: str, tmp_path: Path, faketime_bin: str
) -> None:
    inv = write_inventory(tmp_path / "n.toml", lab_pool)
    ds = f"{lab_pool}/ct"
    for hour in range(1, 6):
        zfs.zfs("snapshot", "-r", f"{ds}@nixmox_2026-04-01T0{hour}:00:00Z")
    before = snapshots(zfs, ds)
    proc = nixmox_at(
        "2026-04-01 07:00:00", zfs, tmp_path / "s", "snapshot", "--dry-run", "--config", str(inv)
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(
        re.fullmatch(rf"zfs snapshot -r {ds}@nixmox_2026-04-01T07:00:0\dZ", line) for line in lines
    )
    assert f"zfs destroy {ds}@nixmox_2026-04-01T01:00:00Z" in lines
    assert f"zfs destroy {ds}/subvol-100-disk-0@nixmox_2026-04-01T03:00:00Z" in lines
    assert snapshots(zfs, ds) == before
    assert not (tmp_path / "s" / "journal.sqlite3").exists()


def test_missing_dataset_exits_1_and_others_still_run(
    zfs: ZfsFuse, lab_pool: str, tmp_path: Path, faketime_bin: str
) -> None:
    extra = f'[[snapshots.datasets]]\ndataset = "{lab_pool}/gone"\npolicy = "archive"\n'
    inv = write_inventory(tmp_path / "n.toml", lab_pool, extra)
    proc = nixmox_at("2026-04-02 08:00:00", zfs, tmp_path / "s", "snapshot", "--config", str(inv))
    assert proc.returncode == 1
    assert f"FAILED: dataset {lab_pool}/gone does not exist" in proc.stdout
    assert any(
        n.startswith("nixmox_2026-04-02T08:00:0") for n in snapshots(zfs, f"{lab_pool}/shared")
    )
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("when", "code", "word", "detail"),
    [
        # (faketime's clock runs: a few minutes past 2 h, so the age reads "2 h", not "119 min")
        ("2026-04-01 12:05:00", 0, "OK", "newest snapshot 2 h old"),
        ("2026-04-03 12:00:00", 1, "WARNING", "newest snapshot 2 d old (warning after 2 d)"),
        ("2026-04-06 12:00:00", 2, "CRITICAL", "newest snapshot 5 d old (critical after 4 d)"),
    ],
)
def test_monitor_is_nagios_style(
    zfs: ZfsFuse,
    lab_pool: str,
    tmp_path: Path,
    faketime_bin: str,
    when: str,
    code: int,
    word: str,
    detail: str,
) -> None:
    inv = write_inventory(tmp_path / "n.toml", lab_pool)
    assert (
        nixmox_at(
            "2026-04-01 10:00:00", zfs, tmp_path / "s", "snapshot", "--config", str(inv)
        ).returncode
        == 0
    )
    # Only shared's archive policy (warn 2 d, crit 4 d); ct's hourly one goes critical sooner.
    inv = write_inventory(tmp_path / "m.toml", lab_pool).read_text()
    only_shared = inv.split("[[snapshots.datasets]]")
    monitor_inv = tmp_path / "monitor.toml"
    monitor_inv.write_text(only_shared[0] + "[[snapshots.datasets]]" + only_shared[2])
    proc = nixmox_at(
        when, zfs, tmp_path / "s", "snapshot", "--monitor", "--config", str(monitor_inv)
    )
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"NIXMOX SNAPSHOT {word} - ")
    assert f"'{lab_pool}/shared'=" in proc.stdout.splitlines()[0]
    # The age once, not again in brackets after the threshold.
    assert proc.stdout.splitlines()[1:] == [f"{word}: {lab_pool}/shared: {detail}"]


def test_monitor_unknown_when_zfs_fails(zfs: ZfsFuse, lab_pool: str) -> None:
    verdict = check_freshness(
        zfs_adapter(zfs, Runner()),
        SnapshotTarget(dataset=f"{lab_pool}/nope", policy="p"),
        POLICY,
        datetime.now(UTC),
        None,
        None,
    )
    assert verdict.status == 3 and "does not exist" in verdict.message


def test_snapshots_only_inventory_works_as_it_is(
    zfs: ZfsFuse, tmp_path: Path, faketime_bin: str
) -> None:
    zfs.create_pool("bpool")
    try:
        zfs.zfs("create", "bpool/a")
        zfs.zfs("create", "bpool/a/b")
        inv = tmp_path / "nixmox.toml"
        inv.write_text(
            (Path(__file__).parent / "test_inventory.py")
            .read_text()
            .split('SNAPSHOTS_ONLY = """\\\n')[1]
            .split('"""')[0]
        )
        proc = nixmox_at(
            "2026-06-01 00:00:00", zfs, tmp_path / "s", "snapshot", "--config", str(inv)
        )
        assert proc.returncode == 0, proc.stderr
        assert any(n.startswith("nixmox_2026-06-01T00:00:0") for n in snapshots(zfs, "bpool/a/b"))
        report = json.loads(
            nixmox_at(
                "2026-06-01 00:00:00",
                zfs,
                tmp_path / "s",
                "snapshot",
                "--monitor",
                "--json",
                "--config",
                str(inv),
            ).stdout
        )
        assert report["status"] == "OK"
    finally:
        zfs.destroy_pool("bpool")


def test_keep_is_the_engines_rule() -> None:
    assert POLICY.rule() == Keep(last=2, hourly=3, daily=4, weekly=2)


def test_zfs_command_over_ssh(zfs: ZfsFuse, lab_pool: str, sshd: Sshd) -> None:
    """`[zfs] command = ["ssh", ..., "zfs"]`: the same job, through the system ssh client."""
    command = ["ssh", "-F", str(sshd.ssh_config), sshd.host, str(zfs.bin_dir / "zfs")]
    runner = Runner()
    over_ssh = Zfs(runner, command)
    # The runner goes to the host with the prefix's own options; zfs is what runs there.
    assert over_ssh.runner.remote == Remote(sshd.host, ("-F", str(sshd.ssh_config)))
    assert over_ssh.runs_remotely and over_ssh.command == [str(zfs.bin_dir / "zfs")]
    ds = f"{lab_pool}/shared"
    for day in range(1, 4):
        zfs.zfs("snapshot", f"{ds}@{snapshot_name(datetime(2026, 1, day, tzinfo=UTC))}")
    result = run_target(
        over_ssh,
        SnapshotTarget(dataset=ds, policy="p"),
        SnapshotPolicy.model_validate({"keep-last": 2}),
        UTC,
        datetime(2026, 2, 1, tzinfo=UTC),
    )
    assert result.ok, result
    assert ours(snapshots(zfs, ds)) == [
        snapshot_name(datetime(2026, 1, 3, tzinfo=UTC)),
        snapshot_name(datetime(2026, 2, 1, tzinfo=UTC)),
    ]
    assert runner.history and all(r.argv[0] == command[-1] for r in runner.history)


def test_faketime_drives_days_of_command_runs(
    zfs: ZfsFuse, lab_pool: str, tmp_path: Path, faketime_bin: str
) -> None:
    """Every 12 hours for six days, across Vienna's DST change and into a new month,
    each run a real `nixmox snapshot` process with its clock set by faketime; the
    survivors are exactly what the rule keeps of everything taken. (The weeks-long
    horizon is test_weeks_of_runs_keep_exactly_what_the_rule_keeps, in-process.)"""
    inv = write_inventory(tmp_path / "n.toml", lab_pool)
    state = tmp_path / "state"
    start = datetime(2026, 3, 27, 6, 0, tzinfo=UTC)
    taken: list[str] = []
    for i in range(12):
        when = (start + timedelta(hours=12 * i)).strftime("%Y-%m-%d %H:%M:%S")
        proc = nixmox_at(when, zfs, state, "snapshot", "--json", "--config", str(inv))
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        names = {t["taken"] for t in report["targets"]}
        assert len(names) == 1
        taken.append(names.pop())
    frequent = Keep(hourly=3, daily=2)
    times = [datetime.strptime(n, "nixmox_%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) for n in taken]
    expected = prune(
        [Item(t, False, n) for t, n in zip(times, taken, strict=True)], frequent, VIENNA
    )
    survivors = sorted(d.item.ref for d in expected if d.mark is Mark.KEEP)
    assert sorted(ours(snapshots(zfs, f"{lab_pool}/ct/subvol-100-disk-0"))) == survivors
    archive = prune(
        [Item(t, False, n) for t, n in zip(times, taken, strict=True)], Keep(monthly=2), VIENNA
    )
    assert sorted(ours(snapshots(zfs, f"{lab_pool}/shared"))) == sorted(
        d.item.ref for d in archive if d.mark is Mark.KEEP
    )
    assert len(Journal(state).runs("snapshot", limit=100)) == 12


def test_errors_are_typed_by_phrase_and_exit_code(zfs: ZfsFuse, lab_pool: str) -> None:
    from nixmox.adapters.zfs import DatasetExists, DatasetNotFound, ZfsUsage

    adapter = zfs_adapter(zfs, Runner())
    with pytest.raises(DatasetNotFound):
        adapter.snapshot(f"{lab_pool}/nope", "x", recursive=False)
    adapter.snapshot(f"{lab_pool}/shared", "dup", recursive=False)
    with pytest.raises(DatasetExists):
        adapter.snapshot(f"{lab_pool}/shared", "dup", recursive=False)
    with pytest.raises(ZfsUsage, match="does not accept"):
        adapter._run(["list", "-p", lab_pool], "listing", changes=False)  # zfs-fuse has no -p
    assert not adapter.batch_destroy  # zfs-fuse: no `zfs version`


def test_the_runs_own_snapshot_is_spared_when_a_newer_one_fills_its_period() -> None:
    """The clock moved back: a newer snapshot already fills this hour, yet ours stays."""
    from nixmox.adapters.zfs import Snapshot
    from nixmox.snapshot.policy import plan_prune

    names = ["nixmox_2026-04-01T11:30:00Z", "nixmox_2026-04-01T11:10:00Z"]
    snaps = [Snapshot("tank/ct", n, 0, 0) for n in names]
    keep = Keep(hourly=3)
    assert plan_prune("tank/ct", snaps, keep, VIENNA).remove == [names[1]]
    spared = plan_prune("tank/ct", snaps, keep, VIENNA, spare=names[1])
    assert spared.remove == [] and spared.kept == 2
    # Sparing names only our own snapshot: the others are decided by the rule as before.
    assert plan_prune("tank/ct", snaps, keep, VIENNA, spare=names[0]).remove == [names[1]]


def test_clock_moved_back_keeps_the_new_snapshot(
    zfs: ZfsFuse, lab_pool: str, tmp_path: Path, faketime_bin: str
) -> None:
    inv = write_inventory(tmp_path / "n.toml", lab_pool)
    state = tmp_path / "state"
    for when in ("2026-04-01 11:30:00", "2026-04-01 11:10:00"):
        proc = nixmox_at(when, zfs, state, "snapshot", "--config", str(inv))
        assert proc.returncode == 0, proc.stderr
    assert [n[:-4] for n in ours(snapshots(zfs, f"{lab_pool}/ct"))] == [
        "nixmox_2026-04-01T11:30",
        "nixmox_2026-04-01T11:10",
    ]


def test_a_dry_run_says_why_a_target_failed(
    zfs: ZfsFuse, lab_pool: str, tmp_path: Path, faketime_bin: str
) -> None:
    inv = write_inventory(tmp_path / "n.toml", lab_pool)
    inv.write_text(inv.read_text().replace(f'"{lab_pool}/shared"', f'"{lab_pool}/nope"'))
    proc = nixmox_at(
        "2026-04-01 08:00:00", zfs, tmp_path / "s", "snapshot", "--dry-run", "--config", str(inv)
    )
    assert proc.returncode == 1
    # The other target's commands still print; the failed one says why on stderr.
    assert f"zfs snapshot -r {lab_pool}/ct@" in proc.stdout
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"nixmox: {lab_pool}/nope: ") and "does not exist" in line
