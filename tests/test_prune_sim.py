"""`nixmox prune-sim`: the contract's stdin lines, --tz, --json, the table."""

from __future__ import annotations

import json
import re
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
    assert proc.stderr.strip() == (
        "nixmox: stdin:2: 'yesterday' is neither a time (ISO-8601 like 2026-12-04 02:30, "
        "optionally followed by 'protected') nor a vzdump archive name"
    )


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


def test_a_time_without_seconds_or_t_is_accepted() -> None:
    lines = "2026-12-04 02:30\n2026-12-03 02:30 protected\n2026-12-02T02:30\n"
    rows = json.loads(sim("--keep-last", "1", "--tz", "UTC", "--json", stdin=lines).stdout)
    assert rows == [
        {"time": "2026-12-04 02:30", "mark": "keep", "reason": "keep-last 1/1"},
        {"time": "2026-12-03 02:30", "mark": "protected", "reason": "protected"},
        {
            "time": "2026-12-02T02:30",
            "mark": "remove",
            "reason": "beyond keep-last (1 already kept)",
        },
    ]


PVESM_LIST = """\
Volid                                                    Format  Type        Size VMID
backups:backup/vzdump-lxc-100-2026_11_20-02_30_00.tar.zst tar.zst backup  104857600 100
backups:backup/vzdump-lxc-100-2026_11_21-02_30_00.tar.zst tar.zst backup  104857600 100
backups:backup/vzdump-qemu-101-2026_11_19-02_30_00.vma.zst vma.zst backup 2147483648 101
backups:backup/vzdump-qemu-101-2026_11_21-02_30_00.vma.zst vma.zst backup 2147483648 101
"""


def test_a_storage_listing_is_read_as_it_is_each_guest_on_its_own() -> None:
    rows = json.loads(
        sim("--keep-last", "1", "--tz", "Europe/Vienna", "--json", stdin=PVESM_LIST).stdout
    )
    marks = {r["time"].split("/")[1]: r["mark"] for r in rows}
    # keep-last 1 keeps one per guest, as Proxmox prunes each guest's backups alone.
    assert marks == {
        "vzdump-lxc-100-2026_11_21-02_30_00.tar.zst": "keep",
        "vzdump-qemu-101-2026_11_21-02_30_00.vma.zst": "keep",
        "vzdump-lxc-100-2026_11_20-02_30_00.tar.zst": "remove",
        "vzdump-qemu-101-2026_11_19-02_30_00.vma.zst": "remove",
    }
    stamps = [re.search(r"\d{4}(_\d\d){2}-(\d\d_?){3}", r["time"])[0] for r in rows]  # type: ignore[index]
    assert stamps == sorted(stamps, reverse=True)  # newest first across the guests


def test_a_dump_directory_listing_with_its_companion_files() -> None:
    listing = """\
total 16
-rw-r--r-- 1 root root 900 Nov 21 02:31 vzdump-qemu-101-2026_11_21-02_30_00.log
-rw-r--r-- 1 root root 5G Nov 21 02:31 vzdump-qemu-101-2026_11_21-02_30_00.vma.zst
-rw-r--r-- 1 root root 12 Nov 21 02:31 vzdump-qemu-101-2026_11_21-02_30_00.vma.zst.notes
-rw-r--r-- 1 root root 5G Nov 20 02:31 vzdump-qemu-101-2026_11_20-02_30_00.vma.zst
-rw-r--r-- 1 root root 5G Nov 19 02:31 vzdump-qemu-101-2026_11_19-02_30_00.vma.zst
-rw-r--r-- 1 root root 0 Nov 19 09:00 vzdump-qemu-101-2026_11_19-02_30_00.vma.zst.protected
-rw-r--r-- 1 root root 5G Nov 10 12:00 vzdump-qemu-101-before-upgrade.vma.zst
"""
    rows = json.loads(sim("--keep-last", "1", "--tz", "UTC", "--json", stdin=listing).stdout)
    assert [(r["time"], r["mark"]) for r in rows] == [
        ("vzdump-qemu-101-2026_11_21-02_30_00.vma.zst", "keep"),
        ("vzdump-qemu-101-2026_11_20-02_30_00.vma.zst", "remove"),
        ("vzdump-qemu-101-2026_11_19-02_30_00.vma.zst", "protected"),
    ]


def test_on_a_terminal_it_says_it_reads_stdin() -> None:
    import os
    import pty

    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            [NIXMOX, "prune-sim", "--keep-last", "1", "--tz", "UTC"],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.close(terminal)
        # A line, then Ctrl-D at the start of the next: the end of the input.
        os.write(controller, b"2026-12-04 02:30\n\x04")
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(controller)
    assert proc.returncode == 0, err
    assert err.splitlines() == [
        "prune-sim: reading backups from stdin, one per line (a time or a vzdump file name); "
        "end with Ctrl-D"
    ]
    assert "2026-12-04 02:30  keep" in out
    # Not on a pipe: a filter stays quiet.
    assert sim("--keep-last", "1").stderr == ""
