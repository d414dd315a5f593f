"""Pool health after the runs: metrics, history words, status lines, notifications.

The journaled summaries are made by the product's own code from the captured
``zpool status`` and ``smartctl --json`` data files (tests/data): a degraded
mirror whose one disk's counters grow between two checks, then scrubs.
Notifications go through the real apprise to a loopback HTTP endpoint.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nixmox.adapters.journal import Journal, Run
from nixmox.inventory.load import load_inventory
from nixmox.observe.findings import finding_changes
from nixmox.observe.history import summary_lines
from nixmox.observe.metrics import update_textfile
from nixmox.observe.status import Report, lines, pool_rows
from nixmox.pool.job import OperationResult
from nixmox.pool.recorded import recorded_pools
from nixmox.pool.runs import HealthReport, OperationSummary, PoolReading
from nixmox.runtime.run import observed_run
from tests.observe_support import inventory, receiver, record
from tests.peers.require import need_binary
from tests.pool_support import (
    GROWING,
    TIB,
    capacity_run,
    scrub_summary,
    tank_check,
)


def journal_runs(state: Path) -> list[Run]:
    journal = Journal(state)
    try:
        return journal.runs(limit=50)
    finally:
        journal.close()


def values(prom: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(prom.read_text())
        for s in f.samples
    }


def test_the_textfile_has_pool_and_disk_health(tmp_path: Path) -> None:
    state, prom = tmp_path / "state", tmp_path / "nixmox.prom"
    now = datetime.now(UTC)
    # Ten days ago tank was 5.2 TiB full, now 6 TiB of 8: +1%/day, 90% in about 15 days.
    history = (capacity_run(10, int(5.2 * TIB)),)
    record(state, "pool check", "ok", tank_check(now, history=history))
    record(state, "pool scrub", "ok", scrub_summary("tank", repaired=4096))
    inv = load_inventory(inventory(tmp_path, textfile=prom, urls=[]))
    journal = Journal(state)
    try:
        update_textfile(inv, journal, UTC)
        [scrub] = journal.runs("pool scrub")
    finally:
        journal.close()
    got = values(prom)
    tank = (("pool", "tank"),)
    assert got[("nixmox_pool_state", (("pool", "tank"), ("state", "DEGRADED")))] == 1
    assert got[("nixmox_pool_state", (("pool", "tank"), ("state", "ONLINE")))] == 0
    errors = {
        (dict(labels)["vdev"], dict(labels)["type"]): value
        for (name, labels), value in got.items()
        if name == "nixmox_pool_vdev_errors" and value
    }
    assert errors == {(GROWING, "read"): 3, (GROWING, "checksum"): 12}
    assert (
        got[("nixmox_pool_allocated_bytes", tank)] / got[("nixmox_pool_size_bytes", tank)] == 0.75
    )
    assert got[("nixmox_pool_fragmentation_ratio", tank)] == 0.12
    # The newest scrub is the one nixmox ran, not the older one zpool status named.
    assert got[("nixmox_pool_scrub_last_end_timestamp_seconds", tank)] == scrub.ended
    assert got[("nixmox_pool_scrub_last_repaired_bytes", tank)] == 4096
    assert got[("nixmox_pool_scrub_last_errors", tank)] == 0
    days = got[("nixmox_pool_fill_forecast_seconds", tank)] / 86400
    assert 14 < days < 16
    disk = (("device", GROWING),)
    assert got[("nixmox_disk_smart_healthy", disk)] == 1
    assert got[("nixmox_disk_reallocated_sectors", disk)] == 8
    assert got[("nixmox_disk_power_on_seconds", disk)] == 30011 * 3600
    nvme = (("device", "nvme-Samsung_SSD_980_PRO_1TB_S5GXNX0T123456"),)
    assert got[("nixmox_disk_endurance_used_ratio", nvme)] == 0.03
    assert got[("nixmox_disk_media_errors", nvme)] == 0
    assert got[("nixmox_disk_temperature_celsius", nvme)] == 41
    lint = subprocess.run(
        [need_binary("promtool", "prometheus"), "check", "metrics"],
        input=prom.read_text(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (lint.returncode, lint.stdout + lint.stderr) == (0, "")


def test_a_failing_disk_and_scrub_errors_in_the_metrics_and_the_words(tmp_path: Path) -> None:
    state = tmp_path / "state"
    # The disk whose counters grew now fails outright.
    summary = tank_check(datetime.now(UTC), growing="sata-failing.json")
    record(state, "pool check", "ok", summary)
    record(state, "pool scrub", "ok", scrub_summary("tank", errors=2, repaired=1 << 20))
    [tank] = recorded_pools(journal_runs(state))
    pools, disks = pool_rows([tank])
    bad = next(d for d in disks if d.device == GROWING)
    assert bad.healthy is False and bad.health.startswith("FAILING: ")
    assert "2208 reallocated" in bad.health
    [row] = pools
    assert (row.state, row.capacity, row.scrub_errors) == ("DEGRADED", 75.0, 2)
    report = Report(time.time(), None, 0, pools=pools, disks=disks)
    text = "\n".join(lines(report))
    assert "tank  DEGRADED  75%" in text and ", 2 errors, 1048576 B repaired" in text
    assert "not enough history for a forecast yet" in text
    assert any(GROWING in line and "FAILING: " in line for line in text.splitlines())
    assert json.loads(json.dumps(report.as_json()))["pools"][0]["scrub_outcome"] == "finished"
    scrub, check = journal_runs(state)
    assert summary_lines(scrub)[:2] == [
        "1 pool scrubbed, 2 errors, 1048576 B repaired",
        "tank: 2 errors it could not repair",
    ]
    words = summary_lines(check)
    assert words[0] == "1 pool and 5 disks read, 4 findings"
    assert f"FAIL {GROWING}: SMART overall health: FAILING" in words
    assert any(w.startswith("FAIL tank/8650281417409287373: UNAVAIL") for w in words)


def test_trim_and_an_unreadable_pool_in_words() -> None:
    trim = OperationSummary(
        "trim",
        (
            OperationResult("tank", "trim", "finished", "trimmed"),
            OperationResult("rpool", "trim", "unsupported", "this zpool has no `zpool trim`"),
        ),
    )
    run = Run(1, "pool trim", 0.0, 1.0, "failed", trim.to_json(), 1)
    assert summary_lines(run) == [
        "1 pool trimmed",
        "1 failed: rpool: unsupported: this zpool has no `zpool trim`",
    ]
    unread = HealthReport((PoolReading("gone", None, None, error="no such pool"),), (), (), ())
    check = Run(2, "pool check", 0.0, 1.0, "failed", unread.to_json(), 1)
    assert summary_lines(check) == [
        "1 pool and 0 disks read, nothing to report",
        "1 failed: gone: no such pool",
    ]


def _run(n: int, command: str, summary: dict[str, Any]) -> Run:
    return Run(n, command, float(n), float(n) + 0.5, "ok", summary, 1)


def test_findings_are_news_once_whichever_pool_command_saw_them_first() -> None:
    now = datetime.now(UTC)
    first = _run(1, "pool check", tank_check(now))
    news = finding_changes(first, [])
    assert news is not None and not news.cleared
    assert f"disk-smart-growth {GROWING} WARN" not in news.new  # nothing to compare with yet
    assert "pool-vdev tank/8650281417409287373 FAIL" in news.new
    # The same check again: no news.
    again = _run(2, "pool check", tank_check(now))
    assert not finding_changes(again, [first])
    # The disk's counters grew (compared with the journaled reading): that is new, and
    # its two pending sectors; nothing else.
    grew_doc = tank_check(now, growing="sata-growing-after.json", history=(again,))
    grew = _run(3, "pool check", grew_doc)
    changes = finding_changes(grew, [again, first])
    assert changes is not None and changes.new == (
        f"disk-smart {GROWING} WARN",
        f"disk-smart-growth {GROWING} WARN",
    )
    # A scrub that found errors; the next check sees them in zpool status: one piece of news.
    scrub = _run(4, "pool scrub", scrub_summary("tank", errors=2))
    assert finding_changes(scrub, [grew, again, first]) == type(changes)(
        ("pool-scrub tank FAIL",), ()
    )
    check_doc = tank_check(now, growing="sata-growing-after.json", history=(again,))
    for c in check_doc["checks"]:
        if c["id"] == "pool-scrub":
            c["status"], c["message"] = "FAIL", "the last scrub found 2 errors"
    check_doc["findings"] = sorted(
        f"{c['id']} {c['subject']} {c['status']}"
        for c in check_doc["checks"]
        if c["status"] in ("WARN", "FAIL")
    )
    after = _run(5, "pool check", check_doc)
    # The growth is not new either: the previous check said it already.
    assert not finding_changes(after, [scrub, grew, again, first])
    # A clean scrub clears it, and only it; a scrub of another pool judges nothing of tank.
    clean = _run(6, "pool scrub", scrub_summary("tank"))
    other = _run(7, "pool scrub", scrub_summary("rpool"))
    assert finding_changes(clean, [after, scrub, grew]) == type(changes)(
        (), ("pool-scrub tank FAIL",)
    )
    assert not finding_changes(other, [clean, after, scrub])
    # Runs without findings (backup) are not compared at all.
    assert finding_changes(_run(8, "backup", {"guests": []}), [first]) is None


def test_notified_when_findings_change_not_on_every_run(tmp_path: Path) -> None:
    state = tmp_path / "state"
    now = datetime.now(UTC)
    with receiver() as rec:
        inv = load_inventory(inventory(tmp_path, textfile=None, urls=[rec.url]))
        for summary in (tank_check(now), tank_check(now)):
            with observed_run(inv, "pool check", state) as run:
                run.summary = summary
        [found] = rec.bodies
        assert found["type"] == "failure"
        assert found["title"].startswith("nixmox pool check found ")
        assert "new problems on pve1" in found["title"]
        assert "new: pool-vdev tank/8650281417409287373 FAIL" in found["message"]
        with observed_run(inv, "pool scrub", state) as run:
            run.summary = scrub_summary("tank", errors=3)
        assert rec.bodies[1]["title"] == "nixmox pool scrub found 1 new problem on pve1"
        assert rec.bodies[1]["message"].splitlines()[:3] == [
            "new: pool-scrub tank FAIL",
            "1 pool scrubbed, 3 errors",
            "tank: 3 errors it could not repair",
        ]
        with observed_run(inv, "pool scrub", state) as run:
            run.summary = scrub_summary("tank")
        cleared = rec.bodies[2]
        assert cleared["type"] == "success"  # apprise's word for a recovery
        assert cleared["title"] == "nixmox pool scrub on pve1: 1 problem cleared"
        with observed_run(inv, "pool scrub", state) as run:
            run.summary = scrub_summary("tank")
        assert len(rec.bodies) == 3


@pytest.mark.parametrize(("rate", "crossed"), [(1.0, True), (0.2, False)])
def test_the_forecast_crossing_the_horizon_is_news(rate: float, crossed: bool) -> None:
    now = datetime.now(UTC)
    # tank at 75%: at 1%/day 90% in 15 days, inside the 60 days' horizon; at 0.2%/day, 75.
    before = int((75 - rate * 10) / 100 * 8 * TIB)
    doc = tank_check(now, history=(capacity_run(10, before),))
    forecast = next(c for c in doc["checks"] if c["id"] == "pool-forecast")
    assert (forecast["status"] == "WARN") is crossed, forecast
    news = finding_changes(_run(2, "pool check", doc), [_run(1, "pool check", tank_check(now))])
    assert news is not None
    assert ("pool-forecast tank WARN" in news.new) is crossed


def test_status_pool_lines_before_any_pool_run() -> None:
    report = Report(time.time(), None, 0)
    assert not [line for line in lines(report) if line.startswith("pool")]
    assert report.as_json()["pools"] == [] and report.as_json()["disks"] == []


def test_a_check_of_one_pool_keeps_the_others_reading() -> None:
    now = datetime.now(UTC)
    both = tank_check(now)
    both["pools"].append({**both["pools"][0], "pool": "rpool", "state": "ONLINE", "disks": []})
    only_tank = tank_check(now)
    only_tank["pools"][0]["state"] = "ONLINE"
    older = Run(1, "pool check", 0.0, 1.0, "ok", both, 1)
    newer = Run(2, "pool check", 2.0, 3.0, "ok", only_tank, 1)
    recorded = {p.pool: p for p in recorded_pools([newer, older])}
    assert recorded["tank"].state == "ONLINE" and recorded["tank"].checked == 3.0
    assert recorded["rpool"].state == "ONLINE" and recorded["rpool"].checked == 1.0
    assert recorded["tank"].scrub is not None
    # zpool status's last scrub, from the newest check that read the pool.
    assert recorded["tank"].scrub.ended == datetime(2025, 11, 9, 5, 36, 45, tzinfo=UTC).timestamp()
