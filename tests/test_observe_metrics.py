"""The metrics textfile and the history lines, from a journal of real job summaries."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from nixmox.adapters.journal import Journal, Run
from nixmox.cli.main import run
from nixmox.inventory.load import load_inventory
from nixmox.observe import run_counts
from nixmox.observe.history import summary_lines
from nixmox.observe.metric_names import METRICS, RUN_RESULTS
from nixmox.observe.metrics import rollbacks_of, update_textfile
from tests.observe_support import inventory, record

VIENNA = ZoneInfo("Europe/Vienna")
ARCHIVE = "backups:backup/vzdump-qemu-101-2026_11_25-02_30_00.vma.zst"


def backup_guest(name: str, vmid: int, result: str, archive: str | None, **extra: object) -> dict:
    row = {"guest": name, "vmid": vmid, "result": result, "archive": archive, "size": 0}
    row.update({"seconds": 1.0, "kept": 3, "removed": [], "errors": [], "message": ""}, **extra)
    return row


def seed(state: Path) -> None:
    ok_ct = "backups:backup/vzdump-lxc-100-2026_11_24-02_30_00.tar.zst"
    record(state, "backup", "ok", {"guests": [backup_guest("nixos-lxc", 100, "ok", ok_ct, size=7)]})
    rows = [
        backup_guest("nixos-vm", 101, "ok", ARCHIVE, size=1234, removed=["a", "b"]),
        backup_guest("nixos-lxc", 100, "failed", None, message="vzdump failed: EOF"),
    ]
    record(state, "backup", "failed", {"guests": rows})
    record(
        state,
        "snapshot",
        "ok",
        {
            "targets": [
                {
                    "dataset": "rpool/data/vm",
                    "taken": "nixmox_2026-11-25T10:00:00Z",
                    "error": None,
                    "datasets": [
                        {"dataset": "rpool/data/vm", "kept": 5, "held": 0, "removed": ["x"]},
                        {"dataset": "rpool/data/vm/vm-101-disk-0", "kept": 4, "held": 1},
                    ],
                }
            ]
        },
    )
    updates = {"guest": "nixos-vm", "vmid": 101}
    record(
        state,
        "update nixos",
        "failed",
        {"guests": [{**updates, "result": "failed", "rolled_back": True}]},
    )
    record(
        state,
        "update nixos",
        "ok",
        {"guests": [{**updates, "result": "ok", "rolled_back": False}], "pending": {"pve1": 3}},
    )


def test_textfile_has_only_declared_metrics_with_their_labels(tmp_path: Path) -> None:
    state, prom = tmp_path / "state", tmp_path / "nixmox.prom"
    seed(state)
    inv = load_inventory(inventory(tmp_path, textfile=prom, urls=[]))
    journal = Journal(state)
    assert update_textfile(inv, journal, VIENNA) == prom
    families = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in families.values():
        for s in family.samples:
            name = family.name + ("_total" if family.type == "counter" else "")
            assert s.name == name and name in METRICS, s.name
            kind, labels, _ = METRICS[name]
            assert family.type == kind and tuple(sorted(s.labels)) == tuple(sorted(labels))
            values[(name, tuple(sorted(s.labels.items())))] = s.value
    vm = (("id", "qemu/101"), ("name", "nixos-vm"))
    ct = (("id", "lxc/100"), ("name", "nixos-lxc"))
    when = datetime(2026, 11, 25, 2, 30, tzinfo=VIENNA).timestamp()
    assert values[("nixmox_guest_backup_newest_timestamp_seconds", vm)] == when
    assert values[("nixmox_guest_backup_newest_size_bytes", vm)] == 1234
    # The failed run named no archive for the container: the older run's stands.
    ct_when = datetime(2026, 11, 24, 2, 30, tzinfo=VIENNA).timestamp()
    assert values[("nixmox_guest_backup_newest_timestamp_seconds", ct)] == ct_when
    assert values[("nixmox_job_last_run_success", (("command", "backup"),))] == 0
    assert values[("nixmox_job_last_run_success", (("command", "snapshot"),))] == 1
    assert values[("nixmox_job_runs_total", (("command", "backup"), ("result", "failed")))] == 1
    assert values[("nixmox_job_runs_total", (("command", "backup"), ("result", "ok")))] == 1
    disk = (("dataset", "rpool/data/vm/vm-101-disk-0"),)
    assert values[("nixmox_dataset_snapshots", disk)] == 4
    assert (
        values[("nixmox_dataset_snapshot_newest_timestamp_seconds", disk)]
        == datetime.fromisoformat("2026-11-25T10:00:00+00:00").timestamp()
    )
    assert values[("nixmox_update_rollbacks_total", vm)] == 1
    assert values[("nixmox_guest_update_last_success", vm)] == 1
    assert values[("nixmox_pending_updates", (("target", "pve1"),))] == 3
    assert not list(tmp_path.glob("nixmox.prom.*"))  # the temporary file was renamed


def test_history_says_what_changed_and_what_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    seed(state)
    monkeypatch.setenv("NIXMOX_STATE_DIR", str(state))
    [failed, ok] = Journal(state).runs("backup", exact=True)
    assert summary_lines(failed) == [
        "1 guest backed up, 2 archives removed",
        "1 failed: nixos-lxc: vzdump failed: EOF",
    ]
    assert summary_lines(ok)[0] == "1 guest backed up, 0 archives removed"
    assert run(["history", "--job", "backup", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["result"] for r in runs] == ["failed", "ok"] and runs[0]["summary"]["guests"]
    assert run(["history"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["started", "job", "result", "took", "summary"]
    # Each time names its zone (this machine's: no inventory here).
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Z+-]\w* ", ln) for ln in lines[1:])
    assert [ln.split()[3] for ln in lines[1:]] == [
        "update",
        "update",
        "snapshot",
        "backup",
        "backup",
    ]
    assert "0 guests updated, 1 rolled back (nixos-vm); 1 failed: nixos-vm" in lines[2]
    assert run(["history", "--limit", "0"]) == 1
    assert "--limit 0" in capsys.readouterr().err


def _update_values(tmp_path: Path, rows: list[dict[str, object]]) -> dict[str, float]:
    state, prom = tmp_path / "state", tmp_path / "nixmox.prom"
    record(state, "update windows", "ok", {"guests": rows, "pending": {}})
    inv = load_inventory(inventory(tmp_path, textfile=prom, urls=[]))
    update_textfile(inv, Journal(state), VIENNA)
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(prom.read_text()):
        for s in family.samples:
            if family.name == "nixmox_guest_update_last_success":
                out[s.labels["name"]] = s.value
    return out


def test_nothing_to_do_and_a_held_reboot_count_as_success_and_a_node_is_named_as_pve_does(
    tmp_path: Path,
) -> None:
    rows: list[dict[str, object]] = [
        {"guest": "win11-gaming", "vmid": 102, "result": "held", "rolled_back": False},
        {"guest": "nixos-vm", "vmid": 101, "result": "unchanged", "rolled_back": False},
        {"guest": "nixos-lxc", "vmid": 100, "result": "skipped", "rolled_back": False},
        {"guest": "pve1", "vmid": None, "result": "failed", "rolled_back": False},
    ]
    assert _update_values(tmp_path, rows) == {"win11-gaming": 1.0, "nixos-vm": 1.0, "pve1": 0.0}


def test_history_words_for_provisioning_and_template_uploads(tmp_path: Path) -> None:
    state = tmp_path / "state"
    steps = [
        {"step": "precheck", "ok": True, "changed": False, "pending": False, "skipped": False},
        {"step": "steam", "ok": True, "changed": True, "pending": False, "skipped": False},
        {"step": "rust", "ok": True, "changed": False, "pending": True, "skipped": False},
        {"step": "msi", "ok": False, "changed": False, "pending": False, "skipped": False},
        {"step": "postcheck", "ok": False, "changed": False, "pending": False, "skipped": True},
    ]
    guest = {"guest": "win11-gaming", "vmid": 102, "result": "failed", "steps": steps}
    record(state, "windows provision", "failed", {"guests": [guest]})
    record(state, "template upload", "ok", {"volid": "local:vztmpl/x.tar.xz", "uploaded": True})
    record(state, "template upload", "ok", {"vmid": 9000, "name": "nixos-vm"})
    journal = Journal(state)
    [provision] = journal.runs("windows provision", exact=True)
    assert summary_lines(provision) == [
        "win11-gaming: changed steam; left to the user: rust; failed: msi"
    ]
    vm, ct = journal.runs("template upload", exact=True)
    assert summary_lines(ct) == ["local:vztmpl/x.tar.xz uploaded"]
    assert summary_lines(vm) == ["VM template 9000 (nixos-vm)"]


# -- counters that never go down ----------------------------------------------------


def _counters(prom: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(prom.read_text()):
        if family.type == "counter":
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _runs(command: str, result: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("nixmox_job_runs_total", (("command", command), ("result", result)))


def test_counters_never_go_down_when_rows_are_pruned_or_the_journal_is_moved_aside(
    tmp_path: Path,
) -> None:
    state, prom = tmp_path / "state", tmp_path / "nixmox.prom"
    inv = load_inventory(inventory(tmp_path, textfile=prom, urls=[]))
    row = {"guest": "nixos-vm", "vmid": 101, "result": "failed", "rolled_back": True}
    rolled = {"guests": [row]}

    def write() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        journal = Journal(state)
        try:
            update_textfile(inv, journal, VIENNA)
        finally:
            journal.close()
        return _counters(prom)

    record(state, "backup", "ok", {"guests": []})
    record(state, "update nixos", "failed", rolled)
    first = write()
    assert first[_runs("backup", "ok")] == 1 and first[_runs("update nixos", "failed")] == 1
    # Known results exist at 0 from the first run, so a first interruption is an increase.
    assert first[_runs("backup", "interrupted")] == 0
    vm = ("nixmox_update_rollbacks_total", (("id", "qemu/101"), ("name", "nixos-vm")))
    assert first[vm] == 1
    assert write() == first  # writing again counts nothing twice

    # Rows pruned (every run but none), then one more backup: only it is added.
    with sqlite3.connect(state / "journal.sqlite3") as db:
        db.execute("DELETE FROM runs")
    record(state, "backup", "ok", {"guests": []})
    after_prune = write()
    assert after_prune[_runs("backup", "ok")] == 2 and after_prune[vm] == 1

    # The journal moved aside (as a damaged one is): a fresh journal starts at id 1 again.
    (state / "journal.sqlite3").rename(state / "journal.sqlite3.damaged")
    record(state, "backup", "interrupted", {"guests": []})
    record(state, "update nixos", "failed", rolled)
    moved = write()
    assert moved[_runs("backup", "ok")] == 2
    assert moved[_runs("backup", "interrupted")] == 1
    assert moved[_runs("update nixos", "failed")] == 2 and moved[vm] == 2
    assert all(moved[key] >= value for key, value in after_prune.items())


def test_a_run_that_ends_after_a_newer_one_is_counted_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    journal = Journal(state)
    long_backup = journal.start("backup")
    snapshot = journal.start("snapshot")
    journal.finish(snapshot, "ok", {})
    kinds: dict[str, str] = {}
    rolled_back = rollbacks_of(kinds)
    tally = run_counts.update(state, journal.runs(), journal.totals, rolled_back)
    assert tally.runs == {("snapshot", "ok"): 1}
    journal.finish(long_backup, "interrupted", {})
    for _ in range(2):
        tally = run_counts.update(state, journal.runs(), journal.totals, rolled_back)
    assert tally.runs == {("snapshot", "ok"): 1, ("backup", "interrupted"): 1}
    journal.close()


def test_a_damaged_counter_file_starts_again_from_the_journal(tmp_path: Path) -> None:
    state = tmp_path / "state"
    record(state, "backup", "failed", {"guests": []})
    (state / run_counts.FILE).write_text("{not json")
    journal = Journal(state)
    tally = run_counts.update(state, journal.runs(), journal.totals, rollbacks_of({}))
    journal.close()
    assert tally.runs == {("backup", "failed"): 1}
    assert json.loads((state / run_counts.FILE).read_text())["runs"] == [["backup", "failed", 1]]


# The journal as the tally sees it: rows start, finish (each followed by a metrics write, as
# after_run does), get pruned, or the whole journal is replaced by an empty one.
_OPS = st.lists(
    st.one_of(
        st.just(("start",)),
        st.tuples(st.just("finish"), st.integers(0, 3), st.sampled_from(RUN_RESULTS)),
        st.just(("prune",)),
        st.just(("replace",)),
        st.just(("write",)),
    ),
    max_size=60,
)


@given(_OPS)
def test_the_tally_counts_every_finished_run_once_and_never_goes_down(ops: list[tuple]) -> None:
    rows: dict[int, Run] = {}
    next_id, clock = 1, 0.0
    tally: run_counts.Tally | None = None
    finished: dict[tuple[str, str], int] = {}

    def write() -> None:
        nonlocal tally
        window = sorted(rows.values(), key=lambda r: r.id, reverse=True)
        before = dict(tally.runs) if tally is not None else {}
        if tally is None:
            totals: dict[tuple[str, str], int] = {}
            for r in window:
                if r.ended is not None:
                    key = (r.command, r.result or "unknown")
                    totals[key] = totals.get(key, 0) + 1
            tally = run_counts.first(window, totals, lambda run: [])
        else:
            tally = run_counts.advance(tally, window, lambda run: [])
        assert all(tally.runs.get(k, 0) >= n for k, n in before.items())
        assert dict(tally.runs) == {k: n for k, n in finished.items() if n}

    for op in ops:
        clock += 1.0
        if op[0] == "start":
            rows[next_id] = Run(next_id, "backup", clock, None, None, {}, 1)
            next_id += 1
        elif op[0] == "finish":
            running = sorted(r.id for r in rows.values() if r.ended is None)
            if running:
                row = rows[running[op[1] % len(running)]]
                rows[row.id] = Run(row.id, row.command, row.started, clock, op[2], {}, 1)
                finished[("backup", op[2])] = finished.get(("backup", op[2]), 0) + 1
                write()
        elif op[0] == "prune":  # the older half of the finished rows
            done = sorted(r.id for r in rows.values() if r.ended is not None)
            for row_id in done[: len(done) // 2]:
                del rows[row_id]
        elif op[0] == "replace":
            rows, next_id = {}, 1
        else:
            write()
