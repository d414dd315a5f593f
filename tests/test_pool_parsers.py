"""zpool status (text and JSON) and smartctl --json as the product reads them, and
the verdicts doctor gives on them (pure; data files in tests/data, see their READMEs)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from nixmox.adapters.runner import Runner
from nixmox.adapters.smart import Smartctl, SmartError
from nixmox.core.verdict import Status
from nixmox.pool import checks
from nixmox.pool.smart import DiskHealth, parse_smart, pool_disks, whole_disk
from nixmox.pool.status import parse_json, parse_text
from tests.peers.require import need_binary

DATA = Path(__file__).parent / "data"
VIENNA = ZoneInfo("Europe/Vienna")
NOW = datetime(2025, 11, 10, 12, 0, tzinfo=UTC)


def text(name: str) -> str:
    return (DATA / "zpool" / name).read_text()


def smart(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DATA / "smart" / name).read_text())
    return doc


def disk(name: str) -> DiskHealth:
    doc = smart(name)
    return parse_smart(doc, doc["device"]["name"])


# -- zpool status text --------------------------------------------------------------


def test_a_degraded_mirror_names_the_missing_disk_and_the_replace_line() -> None:
    [tank] = parse_text(text("degraded.txt"), VIENNA).values()
    assert tank.state == "DEGRADED" and tank.source == "text"
    names = [v.name for v in tank.leaves]
    assert names == [
        "ata-WDC_WD80EFZZ-68BTXN0_WD-CA1B2C3D",
        "8650281417409287373",
        "ata-ST8000VN004-3CP101_WWZ1ABCD",
        "ata-ST8000VN004-3CP101_WWZ2EFGH",
        "nvme-Samsung_SSD_980_PRO_1TB_S5GXNX0T123456-part4",
        "nvme-Samsung_SSD_980_PRO_1TB_S5GXNX0T123456-part5",
    ]
    assert [v.section for v in tank.leaves][-2:] == ["logs", "cache"]
    found = {(c.id, c.subject): c for c in checks.vdev_checks(tank)}
    gone = found[("pool-vdev", "tank/8650281417409287373")]
    assert gone.status is Status.FAIL
    assert "/dev/disk/by-id/ata-WDC_WD80EFZZ-68BTXN0_WD-CA9Z8Y7X" in gone.message
    assert "`zpool replace tank 8650281417409287373 /dev/disk/by-id/NEW-DISK`" in gone.fix
    noisy = found[("pool-vdev", "tank/ata-ST8000VN004-3CP101_WWZ2EFGH")]
    assert noisy.status is Status.WARN
    assert "3 read, 0 write, 12 checksum errors" in noisy.message
    assert "smartctl -a /dev/disk/by-id/ata-ST8000VN004-3CP101_WWZ2EFGH" in noisy.fix
    scrub = checks.scrub_check(tank, NOW, timedelta(days=35))
    assert scrub.status is Status.PASS and "last scrub" in scrub.message
    assert tank.scan.ended == datetime(2025, 11, 9, 5, 36, 45, tzinfo=VIENNA)


def test_a_resilver_in_progress_is_seen_with_its_progress() -> None:
    [tank] = parse_text(text("resilvering.txt"), VIENNA).values()
    scan = tank.scan
    assert (scan.function, scan.state, scan.percent) == ("resilver", "running", 45.48)
    assert scan.issued == "1.41T / 3.10T" and scan.rate == "376M/s"
    assert scan.to_go == "01:18:33" and scan.repaired == 721 * 2**30
    check = checks.scrub_check(tank, NOW, timedelta(days=35))
    assert check.status is Status.INFO and "resilvering, 45% done" in check.message
    # The replacing-1 group is no leaf; its two members are.
    assert "replacing-1" not in [v.name for v in tank.leaves]
    assert len(tank.leaves) == 3


def test_a_running_scrub_and_trim_state_per_device() -> None:
    [rpool] = parse_text(text("scrubbing-trim.txt"), VIENNA).values()
    assert rpool.scan.state == "running" and rpool.scan.percent == 7.33
    trims = [(v.trim, v.trim_percent) for v in rpool.leaves]
    assert trims == [("trimming", 23), ("trimmed", 100)]


def test_a_paused_scrub_and_a_device_that_cannot_trim() -> None:
    [rpool] = parse_text(text("paused.txt"), VIENNA).values()
    assert (rpool.scan.state, rpool.scan.percent) == ("paused", 44.58)
    assert not rpool.scan.active
    assert rpool.leaves[0].trim == "unsupported"
    assert (
        checks.scrub_check(rpool, NOW, timedelta(days=35)).fix == "`zpool scrub rpool` resumes it"
    )


def test_a_scrub_that_found_unrepairable_errors_fails() -> None:
    [backup] = parse_text(text("scrub-errors.txt"), VIENNA).values()
    assert backup.scan.errors == 2 and backup.scan.repaired == int(1.5 * 2**20)
    assert backup.data_errors == 2
    assert checks.scrub_check(backup, NOW, timedelta(days=35)).status is Status.FAIL
    found = {c.id: c for c in checks.vdev_checks(backup)}
    assert found["pool-data-errors"].status is Status.FAIL
    assert "zpool status -v backup" in found["pool-data-errors"].fix


def test_zfs_fuse_status_text() -> None:
    # As zfs-fuse 0.7 prints it (see test_pool_zfs.py for the real thing).
    sample = (
        "  pool: tp\n state: ONLINE\n"
        " scrub: scrub completed after 0h0m with 0 errors on Fri Dec  4 18:33:29 2026\n"
        "config:\n\n\tNAME        STATE     READ WRITE CKSUM\n"
        "\ttp          ONLINE       0     0     0\n"
        "\t  mirror-0  ONLINE       0     0     0\n"
        "\t    /p/a.img  ONLINE       0     0     0\n"
        "\t    /p/b.img  ONLINE       0     0   133  15.1M repaired\n\n"
        "errors: No known data errors\n"
    )
    [tp] = parse_text(sample, UTC).values()
    assert tp.scan.state == "finished" and tp.scan.repaired == int(15.1 * 2**20)
    assert [(v.name, v.checksum) for v in tp.leaves] == [("/p/a.img", 0), ("/p/b.img", 133)]


# -- zpool status -j -------------------------------------------------------------------


def test_json_and_text_of_the_same_degraded_pool_agree() -> None:
    from_json = parse_json(json.loads(text("degraded.json")), VIENNA)["tank"]
    from_text = parse_text(text("degraded.txt"), VIENNA)["tank"]
    assert from_json.source == "json" and from_json.state == from_text.state
    broken = [v for v in from_json.leaves if v.state == "UNAVAIL"]
    assert [v.path for v in broken] == [
        "/dev/disk/by-id/ata-WDC_WD80EFZZ-68BTXN0_WD-CA9Z8Y7X-part1"
    ]
    by_json = {c.subject: c.status for c in checks.vdev_checks(from_json)}
    assert by_json["tank/8650281417409287373"] is Status.FAIL
    assert by_json["tank/ata-ST8000VN004-3CP101_WWZ2EFGH-part1"] is Status.WARN
    assert from_json.scan.ended == datetime.fromtimestamp(1762666605, UTC)
    assert [v.section for v in from_json.leaves][-1] == "logs"


def test_json_scrub_in_progress() -> None:
    rpool = parse_json(json.loads(text("scrubbing.json")), VIENNA)["rpool"]
    assert rpool.scan.state == "running" and rpool.scan.percent == pytest.approx(7.34, 0.01)


def test_json_without_pools_is_refused() -> None:
    with pytest.raises(ValueError, match="no pools"):
        parse_json({"output_version": {}}, VIENNA)


# -- which disks -----------------------------------------------------------------------


def test_whole_disks_come_from_by_id_names_only() -> None:
    assert whole_disk("ata-WDC_WD80EFZZ-68BTXN0_WD-CA1B2C3D-part1") == (
        "ata-WDC_WD80EFZZ-68BTXN0_WD-CA1B2C3D"
    )
    assert whole_disk("/dev/disk/by-id/nvme-eui.0025388b11223344-part3") == (
        "nvme-eui.0025388b11223344"
    )
    for not_a_disk in ("sda", "/dev/sda1", "8650281417409287373", "/tmp/pool.img"):
        assert whole_disk(not_a_disk) is None
    leaves = [
        ("ata-A_1-part1", None),
        ("ata-A_1-part2", None),
        ("8650281417409287373", "/dev/disk/by-id/ata-B_2-part1"),
    ]
    assert pool_disks(leaves, exists=lambda _: True) == [
        "/dev/disk/by-id/ata-A_1",
        "/dev/disk/by-id/ata-B_2",
    ]


# -- smartctl --json -------------------------------------------------------------------


def test_sata_and_nvme_readings() -> None:
    good = disk("sata-good.json")
    assert (good.passed, good.reallocated, good.pending, good.temperature) == (True, 0, 0, 36)
    assert good.power_on_hours == 21873 and good.protocol == "ATA"
    nvme = disk("nvme-good.json")
    assert (nvme.protocol, nvme.percentage_used, nvme.media_errors) == ("NVMe", 3, 0)
    assert nvme.reallocated is None
    for healthy in (good, nvme):
        [check] = checks.disk_checks(healthy, None, 55)
        assert check.status is Status.PASS


def test_failing_disks_fail_with_the_replacement() -> None:
    sata = checks.disk_checks(disk("sata-failing.json"), None, 55)
    assert [(c.status, c.message) for c in sata] == [(Status.FAIL, "SMART overall health: FAILING")]
    assert "zpool replace" in sata[0].fix
    [nvme] = checks.disk_checks(disk("nvme-failing.json"), None, 55)
    assert nvme.status is Status.FAIL and "critical warning 0x4" in nvme.message


def test_growth_since_the_previous_reading_warns() -> None:
    before, after = disk("sata-growing-before.json"), disk("sata-growing-after.json")
    found = checks.disk_checks(after, before, 55)
    growth = next(c for c in found if c.id == "disk-smart-growth")
    assert growth.status is Status.WARN
    assert "reallocated 8 -> 24" in growth.message and "pending 0 -> 2" in growth.message
    # The same reading twice: nothing grew, but the pending sectors still warn.
    again = checks.disk_checks(after, after, 55)
    assert [c.id for c in again] == ["disk-smart"] and "2 pending sectors" in again[0].message
    # Round trip through the journal's JSON keeps what the comparison needs.
    assert DiskHealth.from_json(json.loads(json.dumps(before.to_json()))) == before


def test_hot_and_worn_nvme_warns() -> None:
    doc = smart("nvme-good.json")
    doc["nvme_smart_health_information_log"]["percentage_used"] = 93
    doc["temperature"]["current"] = 71
    [check] = checks.disk_checks(parse_smart(doc, "/dev/disk/by-id/nvme-x"), None, 55)
    assert check.status is Status.WARN
    assert "93% of its rated endurance used" in check.message and "71 °C" in check.message


def test_real_smartctl_on_something_that_is_no_disk(tmp_path: Path) -> None:
    smartctl = need_binary("smartctl", "smartmontools")
    image = tmp_path / "not-a-disk.img"
    image.write_bytes(b"\0" * 4096)
    with pytest.raises(SmartError, match="Unable to detect device type"):
        Smartctl(Runner(), [smartctl]).read(str(image))
    # As doctor reports it: UNKNOWN with smartctl's own words, never a traceback.
    [check] = checks.disk_checks(
        DiskHealth(str(image), error="smartctl cannot read it: Unable to detect device type"),
        None,
        55,
    )
    assert check.status is Status.UNKNOWN
