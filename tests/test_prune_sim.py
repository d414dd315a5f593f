"""`nixmox prune-sim`: the contract's stdin lines, --tz, --json, the table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

NIXMOX = str(Path(sys.executable).parent / "nixmox")

LINES = """\
2024-01-03T06:00:00Z
2024-01-02T18:00:00Z
2024-01-02T12:00:00+00:00 protected

2024-01-02T06:00:00Z
2024-01-01T18:00:00Z
"""


def sim(*args: str, stdin: str = LINES) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NIXMOX, "prune-sim", *args], input=stdin, capture_output=True, text=True)


def test_json_is_the_contract_list_newest_first() -> None:
    proc = sim("--keep-last", "3", "--keep-daily", "1", "--tz", "UTC", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert rows == [
        {"time": "2024-01-03T06:00:00Z", "mark": "keep", "reason": "keep-last 1/3"},
        {"time": "2024-01-02T18:00:00Z", "mark": "keep", "reason": "keep-last 2/3"},
        {"time": "2024-01-02T12:00:00+00:00", "mark": "protected", "reason": "protected"},
        {"time": "2024-01-02T06:00:00Z", "mark": "keep", "reason": "keep-last 3/3"},
        {"time": "2024-01-01T18:00:00Z", "mark": "keep", "reason": "keep-daily 1/1"},
    ]


def test_global_json_flag_works_too() -> None:
    proc = subprocess.run(
        [NIXMOX, "--json", "prune-sim", "--keep-last", "1", "--tz", "UTC"],
        input="2024-01-01T00:00:00Z\n",
        capture_output=True,
        text=True,
    )
    assert json.loads(proc.stdout)[0]["mark"] == "keep"


def test_input_order_does_not_matter() -> None:
    shuffled = "\n".join(reversed(LINES.splitlines())) + "\n"
    a = sim("--keep-daily", "2", "--tz", "UTC", "--json").stdout
    b = sim("--keep-daily", "2", "--tz", "UTC", "--json", stdin=shuffled).stdout
    assert a == b


def test_zone_changes_the_days() -> None:
    lines = "2024-01-02T06:00:00Z\n2024-01-01T23:30:00Z\n2024-01-01T06:00:00Z\n"
    utc = [
        r["mark"]
        for r in json.loads(sim("--keep-daily", "2", "--tz", "UTC", "--json", stdin=lines).stdout)
    ]
    vie = [
        r["mark"]
        for r in json.loads(
            sim("--keep-daily", "2", "--tz", "Europe/Vienna", "--json", stdin=lines).stdout
        )
    ]
    assert utc == ["keep", "keep", "remove"] and vie == ["keep", "remove", "keep"]


def test_times_without_offset_are_local_to_tz() -> None:
    # 00:30 local in Vienna is the previous day in UTC; as local times they are one day.
    lines = "2024-01-02T00:30:00\n2024-01-02T23:00:00\n"
    rows = json.loads(
        sim("--keep-daily", "5", "--tz", "Europe/Vienna", "--json", stdin=lines).stdout
    )
    assert [r["mark"] for r in rows] == ["keep", "remove"]
    assert rows[0]["time"] == "2024-01-02T23:00:00"


def test_table_is_readable() -> None:
    proc = sim("--keep-last", "1", "--tz", "UTC")
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["time", "mark", "reason"]
    assert lines[1].split()[:2] == ["2024-01-03T06:00:00Z", "keep"]
    assert lines[-1] == "1 keep, 1 protected, 3 remove"


def test_keep_all_keeps_everything() -> None:
    rows = json.loads(sim("--keep-all", "--json").stdout)
    assert {r["mark"] for r in rows} == {"keep", "protected"}


def test_no_option_keeps_everything_like_proxmox() -> None:
    rows = json.loads(sim("--json").stdout)
    assert [r["mark"] for r in rows].count("remove") == 0


def test_bad_line_names_its_line_number() -> None:
    proc = sim("--keep-last", "1", stdin="2024-01-01T00:00:00Z\nyesterday\n")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "nixmox: stdin:2: 'yesterday' is not an ISO-8601 time"


def test_unknown_flag_word_is_refused() -> None:
    proc = sim("--keep-last", "1", stdin="2024-01-01T00:00:00Z keep\n")
    assert proc.returncode == 1 and "stdin:1:" in proc.stderr and "protected" in proc.stderr


def test_bad_options_are_one_line() -> None:
    for args in (
        ["--keep-last", "-1"],
        ["--keep-daily", "x"],
        ["--keep-all", "--keep-last", "2"],
        ["--tz", "Mars/Olympus"],
    ):
        proc = sim(*args)
        assert proc.returncode in (1, 2), args
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "Traceback" not in proc.stderr


def test_empty_input_prints_an_empty_list() -> None:
    assert json.loads(sim("--keep-last", "1", "--json", stdin="").stdout) == []
