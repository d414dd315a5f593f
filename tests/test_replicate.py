"""`nixmox replicate` against real ZFS: two zfs-fuse pools here, and a second
zfs-fuse behind the test sshd as the remote target."""

from __future__ import annotations

import io
import json
import shlex
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nixmox.adapters.zfs import SnapshotId
from nixmox.cli.main import run as cli
from nixmox.core.progress import Lines
from nixmox.core.verdict import Status
from nixmox.doctor.replication_area import allowed_lag, lag_check
from nixmox.inventory.load import InventoryInvalid, parse_inventory
from nixmox.replicate.plan import Discard, Ends, Kind, decide, replica_name
from nixmox.replicate.runs import ReplicateSummary, prepare_replicate
from nixmox.snapshot.policy import snapshot_name
from tests.lab.serving import RunningLab
from tests.peers.sshd import Sshd
from tests.peers.zfs import ZfsFuse

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def stamp(hours: int) -> str:
    return snapshot_name(T0 + timedelta(hours=hours))


# -- pure decisions -------------------------------------------------------------


def sid(name: str, guid: int, txg: int) -> SnapshotId:
    return SnapshotId(name, guid, txg)


def test_replica_names_keep_the_tree_below_the_target() -> None:
    assert replica_name("usb/pve", "rpool/data", "rpool/data") == "usb/pve/data"
    assert replica_name("usb/pve", "rpool/data", "rpool/data/ct/a") == "usb/pve/data/ct/a"
    with pytest.raises(ValueError):
        replica_name("usb/pve", "rpool/data", "rpool/database")


def test_common_snapshot_is_matched_by_guid_not_by_name() -> None:
    a, b, c = stamp(0), stamp(1), stamp(2)
    source = [sid(a, 1, 10), sid(b, 2, 11), sid(c, 3, 12)]
    # The target's "b" is another snapshot of the same name: only "a" is common.
    replica = [sid(a, 1, 5), sid(b, 99, 6)]
    ends = Ends("p/d", "t/d", source, (), True, "p/d", replica)
    blocked = decide(ends, Discard(), target="usb")
    assert blocked.kind is Kind.BLOCKED and blocked.common == a
    assert f"--discard t/d@{b}" in (blocked.fix or "")
    # Named exactly, it may go: then everything after the common one is sent.
    allowed = decide(ends, Discard(frozenset({f"t/d@{b}"})), target="usb")
    assert allowed.kind is Kind.INCREMENTAL and allowed.discard == (b,)
    assert [(s.base, s.snapshot) for s in allowed.sends] == [(f"@{a}", b), (f"@{b}", c)]


def test_a_bookmark_stands_in_for_a_pruned_base() -> None:
    a, b = stamp(0), stamp(1)
    ends = Ends(
        "p/d", "t/d", [sid(b, 2, 11)], [sid(f"nixmox-usb_{a}", 1, 10)], True, "p/d", [sid(a, 1, 5)]
    )
    decision = decide(ends, Discard(), target="usb")
    assert [(s.base, s.snapshot) for s in decision.sends] == [(f"#nixmox-usb_{a}", b)]


def test_a_replica_nixmox_did_not_make_is_left_alone() -> None:
    ends = Ends("p/d", "t/d", [sid(stamp(0), 1, 1)], (), True, None, [sid(stamp(0), 1, 1)])
    decision = decide(ends, Discard(), target="usb")
    assert decision.kind is Kind.BLOCKED and "not made by nixmox" in (decision.error or "")
    assert "zfs set nixmox:source=p/d t/d" in (decision.fix or "")


def test_config_check_refuses_a_source_nixmox_never_snapshots() -> None:
    text = inventory("zfs", "tank/shared", "usb/pve")
    assert parse_inventory(text).replication is not None
    unsnapshotted = text.replace(
        'dataset = "tank/shared"\npolicy', 'dataset = "tank/media"\npolicy'
    )
    with pytest.raises(InventoryInvalid) as refused:
        parse_inventory(unsnapshotted)
    assert "tank/shared is in no [[snapshots.datasets]]" in str(refused.value)
    # Inside a recursive snapshot tree is enough.
    below = text.replace('dataset = "tank/shared"\npolicy', 'dataset = "tank"\npolicy')
    assert parse_inventory(below).replication is not None


# -- real ZFS -------------------------------------------------------------------


@pytest.fixture
def pools(zfs: ZfsFuse) -> Iterator[tuple[str, str]]:
    src, dst = zfs.create_pool(), zfs.create_pool()
    zfs.zfs("create", f"{src}/data")
    zfs.zfs("create", f"{src}/data/ct")
    zfs.zfs("create", f"{dst}/backup")
    try:
        yield src, dst
    finally:
        zfs.destroy_pool(src)
        zfs.destroy_pool(dst)


def inventory(
    zfs_bin: str,
    src: str,
    target: str,
    *,
    keep: str = "",
    host: str | None = None,
    target_zfs: str | None = None,
    recursive: bool = True,
) -> str:
    host_line = f'host = "{host}"\n' if host else ""
    return (
        f'timezone = "UTC"\n[zfs]\ncommand = ["{zfs_bin}"]\n'
        f'[replication.targets.usb]\ndataset = "{target}"\n{host_line}'
        f'zfs_command = ["{target_zfs or zfs_bin}"]\n{keep}\n'
        f'[[replication.datasets]]\ndataset = "{src}"\ntarget = "usb"\n'
        f"recursive = {'true' if recursive else 'false'}\n"
        # nixmox replicates only what it snapshots (a config check).
        f'[snapshots.policies.all]\nkeep-last = 1000\n[[snapshots.datasets]]\ndataset = "{src}"\n'
        f'policy = "all"\nrecursive = true\n'
    )


def run(text: str, **kwargs: object) -> ReplicateSummary:
    inv = parse_inventory(text)
    return prepare_replicate(inv, dry_run=False, **kwargs)()  # type: ignore[arg-type]


def snaps(zfs: ZfsFuse, ds: str) -> list[str]:
    out = zfs.zfs(
        "list", "-H", "-o", "name", "-t", "snapshot", "-s", "createtxg", "-r", "-d", "1", ds
    )
    return [line.split("@", 1)[1] for line in out.stdout.splitlines()]


def guid(zfs: ZfsFuse, snap: str) -> str:
    return zfs.zfs("get", "-H", "-p", "-o", "value", "guid", snap).stdout.strip()


def take(zfs: ZfsFuse, ds: str, *hours: int) -> None:
    for h in hours:
        zfs.zfs("snapshot", "-r", f"{ds}@{stamp(h)}")


def test_full_then_incremental_then_up_to_date(zfs: ZfsFuse, pools: tuple[str, str]) -> None:
    src, dst = pools
    zbin = str(zfs.bin_dir / "zfs")
    take(zfs, f"{src}/data", 0, 1)
    zfs.zfs("snapshot", f"{src}/data@manual")  # not nixmox's: never sent
    text = inventory(zbin, f"{src}/data", f"{dst}/backup")
    shown = io.StringIO()
    first = run(text, progress=Lines(shown))
    assert first.ok, first.to_json()
    # Progress says each dataset's start and end as it goes.
    told = [line.split(" ", 2)[2] for line in shown.getvalue().splitlines()]
    assert told[0] == f"replicating {src}/data to usb:{dst}/backup/data"
    assert told[-1].startswith(f"{src}/data/ct: sent 2 snapshots, ")
    (entry,) = first.entries
    assert entry.features is not None and entry.features.to_json() == {
        "resume": False,
        "bookmarks": False,
        "raw": False,
    }
    kinds = {d.dataset: (d.kind, d.sent) for d in entry.datasets}
    assert kinds == {
        f"{src}/data": ("full", [stamp(0), stamp(1)]),
        f"{src}/data/ct": ("full", [stamp(0), stamp(1)]),
    }
    assert all(d.bytes > 0 and "hold" in d.used for d in entry.datasets)
    replica = f"{dst}/backup/data"
    assert snaps(zfs, replica) == [stamp(0), stamp(1)]
    assert snaps(zfs, f"{replica}/ct") == [stamp(0), stamp(1)]
    assert guid(zfs, f"{replica}@{stamp(1)}") == guid(zfs, f"{src}/data@{stamp(1)}")
    assert zfs.zfs("get", "-H", "-o", "value", "nixmox:source", replica).stdout.strip() == (
        f"{src}/data"
    )
    # The source's newest sent snapshot is held for the next run; the snapshot job keeps it.
    assert (
        zfs.zfs("get", "-H", "-o", "value", "userrefs", f"{src}/data@{stamp(1)}").stdout.strip()
        == "1"
    )

    take(zfs, f"{src}/data", 2, 3)
    second = run(text)
    assert second.ok, second.to_json()
    d = second.entries[0].datasets[0]
    assert (d.kind, d.sent) == ("incremental", [stamp(2), stamp(3)])
    assert snaps(zfs, replica) == [stamp(h) for h in range(4)]
    # The hold moved with the newest common snapshot.
    userrefs = zfs.zfs("get", "-H", "-o", "value", "userrefs", f"{src}/data@{stamp(1)}").stdout
    assert userrefs.strip() == "0"

    shown = io.StringIO()
    third = run(text, progress=Lines(shown))
    assert [d.kind for d in third.entries[0].datasets] == ["up-to-date", "up-to-date"]
    assert shown.getvalue().splitlines()[-1].endswith(f"{src}/data/ct: up to date")


def replicated_once(zfs: ZfsFuse, pools: tuple[str, str]) -> tuple[str, str]:
    """p/data alone (not recursive) with one snapshot, replicated: the inventory and the replica."""
    src, dst = pools
    take(zfs, f"{src}/data", 0)
    text = inventory(str(zfs.bin_dir / "zfs"), f"{src}/data", f"{dst}/backup", recursive=False)
    assert run(text).ok
    return text, f"{dst}/backup/data"


def test_diverged_target_is_refused_without_loss(zfs: ZfsFuse, pools: tuple[str, str]) -> None:
    src = pools[0]
    text, replica = replicated_once(zfs, pools)
    zfs.zfs("snapshot", f"{replica}@someones")
    take(zfs, f"{src}/data", 1)
    refused = run(text)
    d = refused.entries[0].datasets[0]
    assert not refused.ok and d.kind == "blocked" and "diverged" in (d.error or "")
    assert f"--discard {replica}@someones" in (d.fix or "")
    assert snaps(zfs, replica) == [stamp(0), "someones"]  # nothing lost, nothing sent
    allowed = run(text, discard=[f"{replica}@someones"])
    assert allowed.ok, allowed.to_json()
    assert snaps(zfs, replica) == [stamp(0), stamp(1)]
    assert allowed.entries[0].datasets[0].discarded == [f"{replica}@someones"]


def test_written_target_is_not_rolled_back_unless_named(
    zfs: ZfsFuse, pools: tuple[str, str], tmp_path: Path
) -> None:
    src = pools[0]
    text, replica = replicated_once(zfs, pools)
    mnt = tmp_path / "mnt"
    zfs.zfs("set", f"mountpoint={mnt}", replica)
    try:
        zfs.run("sh", "-c", f"echo changed > {shlex.quote(str(mnt))}/file && sync")
    finally:
        zfs.zfs("set", "mountpoint=none", replica)
    take(zfs, f"{src}/data", 1)
    refused = run(text)
    d = refused.entries[0].datasets[0]
    assert not refused.ok and "written to" in (d.error or "")
    assert f"--discard {replica}" in (d.fix or "")
    assert snaps(zfs, replica) == [stamp(0)]
    assert run(text, discard=[replica]).ok
    assert snaps(zfs, replica) == [stamp(0), stamp(1)]


def test_target_pruned_by_its_own_policy_keeping_the_common_one(
    zfs: ZfsFuse, pools: tuple[str, str]
) -> None:
    src, dst = pools
    zbin = str(zfs.bin_dir / "zfs")
    # The clock went back before the last one: by time it is not the newest,
    # yet it is the newest common snapshot, which the next run starts from.
    take(zfs, f"{src}/data", 0, 5, 9, 3)
    text = inventory(zbin, f"{src}/data", f"{dst}/backup", keep='"keep-last" = 1', recursive=False)
    result = run(text)
    assert result.ok, result.to_json()
    replica = f"{dst}/backup/data"
    assert snaps(zfs, replica) == [stamp(9), stamp(3)]
    assert sorted(result.entries[0].datasets[0].pruned) == sorted([stamp(0), stamp(5)])
    # The source is untouched by the target's policy.
    assert snaps(zfs, f"{src}/data") == [stamp(h) for h in (0, 5, 9, 3)]


def cutting_zfs(zfs: ZfsFuse, directory: Path) -> str:
    """A target zfs whose receive gets only the first 1000 bytes of the stream: a cut link."""
    script = directory / "zfs-cut"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = receive ]; then head -c 1000 | {zfs.bin_dir}/zfs "$@"; exit 1; fi\n'
        f'exec {zfs.bin_dir}/zfs "$@"\n'
    )
    script.chmod(0o755)
    return str(script)


def test_interrupted_send_restarts_cleanly_and_failed_send_prunes_nothing(
    zfs: ZfsFuse, pools: tuple[str, str], tmp_path: Path
) -> None:
    src, dst = pools
    zbin = str(zfs.bin_dir / "zfs")
    take(zfs, f"{src}/data", 0)
    cut = cutting_zfs(zfs, tmp_path)
    text_cut = inventory(zbin, f"{src}/data", f"{dst}/backup", target_zfs=cut, recursive=False)
    failed = run(text_cut)
    d = failed.entries[0].datasets[0]
    assert not failed.ok and d.kind == "full" and d.sent == []
    # zfs-fuse has no resume tokens: nothing half-received is left behind.
    assert zfs.zfs("list", f"{dst}/backup/data", check=False).returncode != 0
    text = inventory(zbin, f"{src}/data", f"{dst}/backup", keep='"keep-last" = 1', recursive=False)
    take(zfs, f"{src}/data", 1, 2)
    again = run(text)
    assert again.ok and again.entries[0].datasets[0].kind == "full"
    replica = f"{dst}/backup/data"
    assert snaps(zfs, replica) == [stamp(2)]
    # Now a send that fails after the target has snapshots its policy would prune.
    zfs.zfs("set", "mountpoint=none", replica)
    take(zfs, f"{src}/data", 3)
    cut_text = inventory(
        zbin,
        f"{src}/data",
        f"{dst}/backup",
        keep='"keep-last" = 1',
        target_zfs=cut,
        recursive=False,
    )
    zfs.zfs("snapshot", f"{src}/data@{stamp(4)}")
    before = snaps(zfs, replica)
    broken = run(cut_text)
    d = broken.entries[0].datasets[0]
    assert not broken.ok and d.pruned == [] and d.error
    # keep-last = 1 would leave one; the failed run pruned nothing at all.
    after = snaps(zfs, replica)
    assert set(before) <= set(after) and len(after) >= 2


def test_dry_run_sends_nothing(zfs: ZfsFuse, pools: tuple[str, str]) -> None:
    src, dst = pools
    zbin = str(zfs.bin_dir / "zfs")
    take(zfs, f"{src}/data", 0, 1)
    inv = parse_inventory(inventory(zbin, f"{src}/data", f"{dst}/backup", recursive=False))
    summary = prepare_replicate(inv, dry_run=True)()
    assert any(" send " in c and "|" not in c for c in summary.commands) or summary.commands
    assert zfs.zfs("list", f"{dst}/backup/data", check=False).returncode != 0


# -- remote target over ssh ------------------------------------------------------


@pytest.fixture(scope="module")
def far_zfs() -> Iterator[ZfsFuse]:
    """A second zfs-fuse: the pools of the machine behind sshd."""
    from tests.peers.require import need_binary, need_root

    need_root("zfs-fuse")
    with ZfsFuse(
        zfs_fuse=need_binary("zfs-fuse", "zfs-fuse"),
        zfs=need_binary("zfs", "zfs-fuse"),
        zpool=need_binary("zpool", "zfs-fuse"),
    ) as z:
        yield z


def test_remote_target_over_ssh(
    zfs: ZfsFuse, far_zfs: ZfsFuse, sshd: Sshd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NIXMOX_SSH_CONFIG", str(sshd.ssh_config))
    src = zfs.create_pool()
    far = far_zfs.create_pool()
    try:
        zfs.zfs("create", f"{src}/data")
        far_zfs.zfs("create", f"{far}/backup")
        take(zfs, f"{src}/data", 0, 1)
        text = inventory(
            str(zfs.bin_dir / "zfs"),
            f"{src}/data",
            f"{far}/backup",
            host=sshd.host,
            target_zfs=str(far_zfs.bin_dir / "zfs"),
            recursive=False,
        )
        first = run(text)
        assert first.ok, json.dumps(first.to_json())
        assert first.entries[0].where == sshd.host
        assert snaps(far_zfs, f"{far}/backup/data") == [stamp(0), stamp(1)]
        take(zfs, f"{src}/data", 2)
        second = run(text)
        d = second.entries[0].datasets[0]
        assert second.ok and (d.kind, d.sent) == ("incremental", [stamp(2)])
        assert guid(far_zfs, f"{far}/backup/data@{stamp(2)}") == guid(zfs, f"{src}/data@{stamp(2)}")
    finally:
        zfs.destroy_pool(src)
        far_zfs.destroy_pool(far)


# -- lag: metrics, history, status, doctor -------------------------------------


def test_allowed_lag_is_one_replicate_period_plus_one_snapshot_period() -> None:
    assert allowed_lag("daily", "hourly") == (
        timedelta(hours=25),
        "schedules.replicate 'daily' + schedules.snapshot 'hourly'",
    )
    assert allowed_lag(None, None) == (timedelta(days=1), "no schedules.replicate, daily assumed")
    now = datetime(2026, 3, 5, tzinfo=UTC)
    fresh = lag_check("p/d", "usb", "t/d", now - timedelta(hours=25), now, timedelta(hours=25), "")
    late = lag_check("p/d", "usb", "t/d", now - timedelta(hours=26), now, timedelta(hours=25), "")
    never = lag_check("p/d", "usb", "t/d", None, now, timedelta(hours=25), "")
    assert [c.status for c in (fresh, late, never)] == [Status.PASS, Status.WARN, Status.WARN]
    assert "t/d is 26 h behind ()" in late.message and "WARN after 25 h" in late.message
    assert "not replicated yet" in never.message


def doctor_replication(host_root: Path, config: Path) -> int:
    """``nixmox doctor --only replication --json`` as run on the node; its exit code."""
    argv = ["--json", "--host-root", str(host_root), "--config", str(config)]
    return cli(["doctor", "--only", "replication", *argv])


def test_lag_in_metrics_history_status_and_doctor(
    zfs: ZfsFuse,
    pools: tuple[str, str],
    lab_env: RunningLab,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src, dst = pools
    zbin = str(zfs.bin_dir / "zfs")
    now = datetime.now(UTC).replace(microsecond=0)
    old = [now - timedelta(days=3), now - timedelta(days=2)]
    for when in old:
        zfs.zfs("snapshot", "-r", f"{src}/data@{snapshot_name(when)}")
    prom = tmp_path / "nixmox.prom"
    config = tmp_path / "nixmox.toml"
    config.write_text(
        inventory(zbin, f"{src}/data", f"{dst}/backup")
        + f'[schedules]\nsnapshot = "hourly"\nreplicate = "daily"\n'
        f'[metrics]\ntextfile = "{prom}"\n'
    )
    assert cli(["replicate", "--config", str(config)]) == 0
    capsys.readouterr()

    samples = {
        (s.name, s.labels["dataset"], s.labels["target"]): s.value
        for f in text_string_to_metric_families(prom.read_text())
        for s in f.samples
        if s.name.startswith("nixmox_replication_")
    }
    newest = old[-1].timestamp()
    assert samples[("nixmox_replication_newest_timestamp_seconds", f"{src}/data", "usb")] == newest
    assert samples[("nixmox_replication_newest_timestamp_seconds", f"{src}/data/ct", "usb")] == (
        newest
    )
    success = samples[("nixmox_replication_last_success_timestamp_seconds", f"{src}/data", "usb")]
    assert abs(success - datetime.now(UTC).timestamp()) < 120

    assert cli(["history", "--json", "--config", str(config)]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["job"] == "replicate"
    assert entry["lines"][0].startswith("2 of 2 datasets replicated, 4 snapshots sent (")

    # Two days behind a daily schedule of hourly snapshots: doctor warns.
    assert doctor_replication(tmp_path, config) == 1
    checks = json.loads(capsys.readouterr().out)["checks"]
    assert {(c["subject"], c["status"]) for c in checks} == {
        (f"{src}/data -> usb", "WARN"),
        (f"{src}/data/ct -> usb", "WARN"),
    }
    assert all("2 d behind" in c["message"] and "WARN after 25 h" in c["message"] for c in checks)

    # status (run as on the node: --host-root) shows the lag and doctor's warning.
    cli(["status", "--json", "--host-root", str(tmp_path), "--config", str(config)])
    report = json.loads(capsys.readouterr().out)
    rows = {r["dataset"]: r for r in report["replication"]}
    assert set(rows) == {f"{src}/data", f"{src}/data/ct"}
    assert rows[f"{src}/data"]["newest"] == newest
    assert 2 * 86400 <= rows[f"{src}/data"]["lag_seconds"] < 2 * 86400 + 600
    assert "replication" in report["doctor"]["areas"]
    assert any(c["id"] == "replication-lag" for c in report["doctor"]["checks"])
    cli(["status", "--host-root", str(tmp_path), "--config", str(config)])
    text = capsys.readouterr().out
    assert "replicated dataset" in text and f"{src}/data/ct" in text

    # A fresh snapshot replicated: the lag is back within the schedule.
    zfs.zfs("snapshot", "-r", f"{src}/data@{snapshot_name(now - timedelta(minutes=10))}")
    assert cli(["replicate", "--config", str(config)]) == 0
    capsys.readouterr()
    assert doctor_replication(tmp_path, config) == 0
    capsys.readouterr()
