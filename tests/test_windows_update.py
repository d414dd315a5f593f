"""`nixmox update windows` against the lab's scripted Windows agent, and its pure decisions.

Each lab test scripts the Windows inside VM 102 (tests/lab/windows_agent.py:
what Windows Update offers, what installing does, what runs, the GPU) and
checks the path the transaction takes, in the report and in the lab (snapshots
taken, kept, deleted or rolled back; what ran in the guest).
"""

from __future__ import annotations

import json
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nixmox.adapters.journal import Journal
from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.settings import connection
from nixmox.cli import update_windows as update_windows_command
from nixmox.cli.main import run
from nixmox.core import interrupt
from nixmox.core.results import CommandResult
from nixmox.inventory.model import ProxmoxSettings, RebootPolicy
from nixmox.rules.window import window_open
from nixmox.updates.guest_snapshots import (
    GuestSnapshots,
    update_snapshot_name,
    update_snapshot_time,
)
from nixmox.windows.scripts import GUEST_DIR, parse_report
from nixmox.windows.update import Timing
from nixmox.windows.update_decisions import (
    Precheck,
    RebootVerdict,
    after_failure,
    after_scan,
    boot_time_text,
    interpret_install,
    postcheck_problems,
    precheck_blocker,
    reboot_verdict,
    still_servicing,
)
from tests.clock import FakeClock
from tests.lab.serving import RunningLab
from tests.lab.windows_agent import WindowsAgent, update
from tests.windows_exec import PLANTED, PLAYER, Folders

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "homelab.toml"
VIENNA = ZoneInfo("Europe/Vienna")
VMID = 102
FAST = Timing(agent_wait=30, reboot_wait=120, ping_every=5)


@pytest.fixture
def env(lab_env: RunningLab) -> RunningLab:
    """The shared lab environment, seeded with the example's guests."""
    lab_env.pve.add_declared_guests()
    lab_env.pve.find("pve1", VMID).status = "running"  # the gamer switched it on
    return lab_env


def windows(lab: RunningLab, **state: Any) -> WindowsAgent:
    base = WindowsAgent.demo()
    for key, value in state.items():
        setattr(base, key, value)
    return lab.pve.script_windows_agent(VMID, base)


def update_windows(
    capsys: pytest.CaptureFixture[str],
    *,
    dry_run: bool = False,
    as_json: bool = True,
    config: Path = EXAMPLE,
    clock: FakeClock | None = None,
) -> tuple[int, Any]:
    code = update_windows_command.run(
        config,
        ["win11-gaming"],
        dry_run=dry_run,
        as_json=as_json,
        clock=clock or FakeClock(),
        timing=FAST,
    )
    out = capsys.readouterr().out
    return code, json.loads(out)["guests"][0] if as_json else out


def configured(tmp_path: Path, policy: str = "when-idle", **update: str) -> Path:
    """The example with the Windows guest's reboot policy and extra [guests.update] keys."""
    text = EXAMPLE.read_text()
    assert text.count('policy = "when-idle"') == 1 and text.count("keep_snapshot = false") == 1
    text = text.replace('policy = "when-idle"', f'policy = "{policy}"')
    extra = "".join(f"\n{key} = {value}" for key, value in update.items())
    text = text.replace("keep_snapshot = false", "keep_snapshot = false" + extra)
    path = tmp_path / "nixmox.toml"
    path.write_text(text)
    return path


def snapshots(lab: RunningLab) -> list[str]:
    return sorted(lab.pve.find("pve1", VMID).snapshots)


def rollbacks(lab: RunningLab) -> list[str]:
    """The lab's qmrollback tasks of VM 102 that finished OK."""
    return [
        t["upid"]
        for t in lab.pve.tasklog
        if t["type"] == "qmrollback" and t["id"] == str(VMID) and t.get("exitstatus") == "OK"
    ]


def rolled_back_to(lab: RunningLab) -> str | None:
    """The snapshot VM 102 was rolled back to (its config's parent after a rollback)."""
    if not rollbacks(lab):
        return None
    return str(lab.pve.find("pve1", VMID).config.get("parent"))


# -- the paths through the transaction ---------------------------------------------


def test_updates_installed_without_a_reboot(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    guest = windows(env, available=[update("KB890830", reboot=False)], reboot_required=False)
    code, row = update_windows(capsys)
    assert (code, row["result"]) == (0, "ok")
    assert row["message"].startswith("installed 1 update, 1 round, 0 reboots")
    assert guest.reboots == 0 and "shutdown" not in guest.ran
    assert guest.ran[-3:] == ["update-install", "update-scan", "update-postcheck"]
    # The snapshot taken before the install is gone once the update succeeded.
    assert snapshots(env) == [] and row["snapshot"] is None
    assert any(s.startswith("snapshot nixmox_update_") and "deleted" in s for s in row["steps"])


def test_reboot_needed_and_allowed_reboots_and_goes_round_again(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    guest = windows(env, after_reboot=[[update("KB5046740")]])
    booted = guest.boot_time
    code, row = update_windows(capsys)
    assert (code, row["result"]) == (0, "ok")
    assert row["message"] == "installed 3 updates, 2 rounds, 2 reboots"
    assert guest.reboots == 2 and guest.boot_time != booted
    assert guest.ran.count("shutdown") == 2
    # After the second reboot the scan is empty: no third install.
    assert guest.ran.count("update-install") == 2 and guest.ran[-2:] == [
        "update-scan",
        "update-postcheck",
    ]
    assert any("back after the reboot" in s for s in row["steps"])
    assert snapshots(env) == []


def test_rounds_stop_at_max_rounds_and_say_what_is_left(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    guest = windows(env, after_reboot=[[update(f"KB50{n}")] for n in range(5)])
    code, row = update_windows(capsys)
    assert (code, row["result"]) == (0, "ok")
    # The example's max_rounds is the default 3: three installs, then one update left.
    assert guest.ran.count("update-install") == 3
    assert row["message"] == "installed 4 updates, 3 rounds, 3 reboots; 1 more offered"
    assert row["pending"] == 1


def test_after_success_old_update_snapshots_are_pruned_and_others_kept(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    api = Proxmox(connection(ProxmoxSettings(), env.env))
    snaps = GuestSnapshots(api, "pve1", "qemu", VMID)
    old = [update_snapshot_name(datetime(2026, 10, d, 5, tzinfo=UTC)) for d in (1, 8, 15, 22)]
    for name in [*old, "before-driver-update"]:
        snaps.take(name)
    windows(env)
    code, row = update_windows(capsys)
    assert (code, row["result"]) == (0, "ok")
    # keep-last 3 (the default) of nixmox's own; the hand-made one is never touched.
    assert snapshots(env) == sorted([*old[1:], "before-driver-update"])
    assert f"old update snapshot {old[0]} pruned" in row["steps"]


def test_a_game_running_holds_the_reboot_and_keeps_the_snapshot(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    guest = windows(env, processes=["explorer.exe", "RustClient.exe"])
    code, row = update_windows(capsys)
    assert code == 0
    assert row["result"] == "held" and row["message"].startswith("reboot pending, held")
    assert "RustClient.exe" in row["message"] and row["pending"] == 1
    assert "shutdown" not in guest.ran and guest.reboots == 0
    assert row["snapshot"] and snapshots(env) == [row["snapshot"]]


def test_a_window_policy_holds_outside_and_reboots_inside_its_window(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = EXAMPLE.read_text()
    assert text.count('policy = "when-idle"') == 1
    config = tmp_path / "nixmox.toml"
    config.write_text(
        text.replace('policy = "when-idle"', 'policy = "window"\nwindow = "Wed *-*-* 04:00"')
    )

    def at(when: datetime) -> dict[str, Any]:
        clock = FakeClock(start=when)
        update_windows_command.run(
            config, [], dry_run=False, as_json=True, clock=clock, timing=FAST
        )
        row: dict[str, Any] = json.loads(capsys.readouterr().out)["guests"][0]
        return row

    guest = windows(env)
    # Wednesday 20:00 in Vienna: outside; the snapshot stays for the next run.
    row = at(datetime(2026, 11, 25, 19, 0, tzinfo=UTC))
    assert row["message"] == "reboot pending, held: outside the reboot window Wed *-*-* 04:00"
    assert guest.reboots == 0
    # The next Wednesday 04:20 in Vienna: the pending reboot happens first, then the scan.
    row = at(datetime(2026, 12, 2, 3, 20, tzinfo=UTC))
    assert row["result"] == "ok" and guest.reboots == 1
    assert row["message"] == "rebooted to finish the pending updates; nothing else offered"


def test_an_install_aborted_after_installing_something_rolls_the_snapshot_back(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    # Aborted (5) after the first update installed: the guest changed.
    guest = windows(env, install_codes=[(5, [2, 5])])
    code, out = update_windows(capsys, as_json=False)
    assert code == 1
    (taken,) = snapshots(env)
    assert rolled_back_to(env) == taken  # the lab rolled VM 102 back to it
    assert "rolled-back" in out and f"rolled back: Proxmox snapshot {taken} of VM 102" in out
    assert "install aborted" in out and "after KB5046617 installed" in out
    assert "shutdown" not in guest.ran and "update-postcheck" not in guest.ran


def test_an_install_that_installed_nothing_fails_without_a_rollback(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    # Code 4 for every update: Windows undid each one itself; nothing to roll back.
    windows(env, install_codes=[4])
    code, row = update_windows(capsys)
    assert (code, row["result"], row["rolled_back"]) == (1, "failed", False)
    assert row["message"].startswith("round 1: install failed (HRESULT 0x80240017)")
    assert "nothing was installed, no rollback" in row["message"]
    assert rollbacks(env) == [] and snapshots(env) == [] and row["snapshot"] is None
    assert env.pve.find("pve1", VMID).status == "running"


def test_a_download_failure_with_policy_never_neither_stops_nor_rolls_back(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    guest = windows(env, fail_downloads=1)
    code, row = update_windows(capsys, config=configured(tmp_path, "never"))
    assert (code, row["result"], row["rolled_back"]) == (1, "failed", False)
    assert row["message"].startswith("round 1: download failed (HRESULT 0x")
    assert "nothing was installed, no rollback" in row["message"]
    vm = env.pve.find("pve1", VMID)
    assert vm.status == "running" and rollbacks(env) == []
    # The snapshot protected nothing: it is gone; the offered updates are still offered.
    assert snapshots(env) == [] and len(guest.available) == 2


def test_a_broken_install_while_the_game_runs_is_not_rolled_back(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    # when-idle, and RustClient.exe starts during the install: a rollback would stop it.
    guest = windows(env, install_codes=[(5, [2, 5])])
    original = guest._script

    def game_starts(name: str, params: dict[str, str]) -> dict[str, Any]:
        report = original(name, params)
        if name == "update-install":
            guest.processes.append("RustClient.exe")
        return report

    guest._script = game_starts  # type: ignore[method-assign]
    code, row = update_windows(capsys)
    assert (code, row["result"], row["rolled_back"]) == (1, "failed", False)
    assert (
        "not rolled back: that stops the running VM and RustClient.exe running" in (row["message"])
    )
    taken = row["snapshot"]
    assert snapshots(env) == [taken] and rollbacks(env) == []
    assert f"roll back by hand: qm rollback 102 {taken}" in row["message"]


def test_code_43_with_policy_never_keeps_the_snapshot_instead_of_stopping_the_vm(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    windows(env, gpu_problem_after_install=43, reboot_required=False)
    code, row = update_windows(capsys, config=configured(tmp_path, "never"))
    assert (code, row["result"], row["rolled_back"]) == (1, "failed", False)
    assert "problem code 43" in row["message"]
    assert "the reboot policy is never" in row["message"]
    assert rollbacks(env) == [] and snapshots(env) == [row["snapshot"]]


def test_gpu_problem_code_43_after_the_update_rolls_back(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    windows(env, gpu_problem_after_install=43)
    code, row = update_windows(capsys)
    assert (code, row["result"], row["rolled_back"]) == (1, "rolled-back", True)
    assert "problem code 43" in row["message"]
    assert row["rollback"] == f"Proxmox snapshot {row['snapshot']} of VM 102"
    assert rolled_back_to(env) == row["snapshot"]


def test_an_agent_that_never_comes_back_fails_without_forcing_anything(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    guest = windows(env, away_calls=None)
    code, row = update_windows(capsys)
    assert (code, row["result"]) == (1, "failed")
    assert "did not come back" in row["message"] and "nothing forced" in row["message"]
    assert row["snapshot"] and snapshots(env) == [row["snapshot"]]
    vm = env.pve.find("pve1", VMID)
    assert vm.status == "running" and rolled_back_to(env) is None
    assert guest.reboots == 1


def test_servicing_in_progress_holds_before_anything_changes(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    guest = windows(env, servicing=["TiWorker"])
    code, row = update_windows(capsys)
    assert (code, row["result"]) == (0, "held")
    assert "TiWorker" in row["message"]
    assert guest.ran == ["update-precheck"] and snapshots(env) == []


def test_a_pending_reboot_the_policy_forbids_holds_without_a_snapshot(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    guest = windows(env, reboot_pending=True, steam_downloading=True)
    code, row = update_windows(capsys)
    assert (code, row["result"], row["pending"]) == (0, "held", 1)
    assert row["message"] == "reboot pending, held: Steam is downloading"
    assert guest.ran == ["update-precheck"] and snapshots(env) == []


def test_nothing_offered_is_unchanged_and_leaves_no_snapshot(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    guest = windows(env, available=[])
    code, row = update_windows(capsys)
    assert (code, row["result"]) == (0, "unchanged")
    assert guest.ran == ["update-precheck", "update-scan"] and snapshots(env) == []


def test_dry_run_only_reads(env: RunningLab, capsys: pytest.CaptureFixture[str]) -> None:
    guest = windows(env)
    code, out = update_windows(capsys, dry_run=True, as_json=False)
    assert code == 0
    assert "would install 2 updates (KB5046617, KB890830)" in out
    assert "a reboot would be allowed now (the guest is idle)" in out
    assert "win11-gaming: would install KB890830: Windows Malicious Software Removal Tool" in out
    assert guest.ran == ["update-precheck", "update-scan"]
    assert snapshots(env) == [] and guest.reboots == 0
    # Only the read-only scripts were written into the guest.
    assert sorted(guest.files) == [
        "C:\\ProgramData\\nixmox\\update-precheck.ps1",
        "C:\\ProgramData\\nixmox\\update-scan.ps1",
    ]


def test_a_persistent_pending_file_rename_neither_holds_nor_reboots(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Antivirus keeps PendingFileRenameOperations filled, across reboots too.
    guest = windows(env, file_renames=True, available=[])
    code, row = update_windows(capsys, config=configured(tmp_path, "never"))
    assert (code, row["result"]) == (0, "unchanged")
    assert any("PendingFileRenameOperations is set" in s for s in row["steps"])
    # An update without a reboot installs, and still nothing reboots.
    guest.available = [update("KB890830", reboot=False)]
    guest.reboot_required = False
    code, row = update_windows(capsys, config=configured(tmp_path, "never"))
    assert (code, row["result"]) == (0, "ok") and guest.reboots == 0
    assert row["message"] == "installed 1 update, 1 round, 0 reboots"


def test_optional_updates_are_left_alone_unless_asked_for(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    preview = update("KB5046756", "2026-11 Cumulative Update Preview (KB5046756)", browse_only=True)
    guest = windows(env, available=[update("KB890830", reboot=False), preview])
    guest.reboot_required = False
    code, row = update_windows(capsys)
    assert (code, row["result"]) == (0, "ok")
    assert row["message"] == "installed 1 update, 1 round, 0 reboots"
    assert guest.available == [preview]
    # optional_updates = true: the preview is installed too.
    code, row = update_windows(capsys, config=configured(tmp_path, optional_updates="true"))
    assert (code, row["result"]) == (0, "ok") and guest.available == []
    assert row["message"] == "installed 1 update, 1 round, 0 reboots"


def test_updates_that_may_ask_for_input_are_skipped_and_named(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    asks = update("KB5048888", "Some Driver Setup (KB5048888)", asks_input=True)
    guest = windows(env, available=[update("KB890830", reboot=False), asks])
    guest.reboot_required = False
    code, row = update_windows(capsys)
    assert (code, row["result"]) == (0, "ok")
    assert row["message"] == (
        "installed 1 update, 1 round, 0 reboots; KB5048888 skipped (may ask for input)"
    )
    assert guest.available == [asks]
    assert (
        row["steps"].count("skipped KB5048888: Some Driver Setup (KB5048888) (may ask for input)")
        == 1
    )
    # Only that one left: nothing offered, the skip still said.
    code, row = update_windows(capsys)
    assert (code, row["result"]) == (0, "unchanged")
    assert row["message"] == "no updates offered; KB5048888 skipped (may ask for input)"


def test_after_a_reboot_the_scan_waits_for_servicing_to_settle(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    guest = windows(env, settling_prechecks=3, after_reboot=[[update("KB5046740", reboot=False)]])
    clock = FakeClock()
    code, row = update_windows(capsys, clock=clock)
    assert (code, row["result"]) == (0, "ok"), row
    assert "waiting for Windows to finish servicing (TiWorker, CBS RebootPending)" in row["steps"]
    assert "servicing finished" in row["steps"]
    # Three prechecks saw servicing busy (the first while waiting for the boot), then the scan.
    first = guest.ran.index("shutdown")
    assert guest.ran[first + 1 :][:5] == ["update-precheck"] * 4 + ["update-scan"]


def test_servicing_that_never_settles_holds_with_the_snapshot_kept(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    guest = windows(env, settling_prechecks=10_000)
    code, row = update_windows(capsys)
    assert (code, row["result"], row["pending"]) == (0, "held", 1)
    assert row["message"].startswith("Windows still servicing 1800 s after the reboot (TiWorker")
    assert snapshots(env) == [row["snapshot"]] and guest.ran.count("update-scan") == 1


def test_answers_with_a_byte_order_mark_and_a_localized_culture_are_read(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    # "Beta: UTF-8 for worldwide language support" and a Finnish time separator.
    guest = windows(env, bom=True, time_separator=".")
    code, row = update_windows(capsys)
    assert (code, row["result"]) == (0, "ok"), row
    assert "booted 2026-11-25T06:00:00Z" in row["steps"][0]
    assert guest.reboots == 1


def test_constrained_language_mode_fails_before_anything_changes(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    guest = windows(env, language_mode="ConstrainedLanguage")
    code, row = update_windows(capsys)
    assert (code, row["result"]) == (1, "failed")
    assert "ConstrainedLanguage mode" in row["message"] and "Smart App Control" in row["message"]
    assert guest.ran == ["update-precheck"] and snapshots(env) == []


def test_the_reboot_runs_shutdown_exe_by_its_full_path(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    windows(env)
    code, _ = update_windows(capsys)
    assert code == 0
    vm = env.pve.find("pve1", VMID)
    shutdowns = [list(a) for a in vm.agent_execs.values() if "/r" in a]
    assert shutdowns == [["C:\\Windows\\System32\\shutdown.exe", "/r", "/t", "5"]]


def test_a_stopped_vm_is_skipped(env: RunningLab, capsys: pytest.CaptureFixture[str]) -> None:
    env.pve.find("pve1", VMID).status = "stopped"
    guest = windows(env)
    code, row = update_windows(capsys)
    assert (code, row["result"]) == (0, "skipped")
    assert guest.ran == []


def test_an_agent_that_does_not_answer_fails_with_nothing_changed(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    guest = windows(env, away_calls=None, gone=True)
    code, row = update_windows(capsys)
    assert (code, row["result"]) == (1, "failed")
    assert "did not answer within 30 s" in row["message"]
    assert guest.ran == [] and snapshots(env) == []


def test_a_guest_folder_a_user_owns_stops_the_run_before_anything_changes(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    folders = Folders(sddl={GUEST_DIR.lower(): PLANTED})
    guest = windows(env, folders=folders)
    code, row = update_windows(capsys)
    assert (code, row["result"]) == (1, "failed")
    assert f"C:\\ProgramData\\nixmox in the guest is owned by {PLAYER}" in row["message"]
    assert "refusing" in row["message"]
    assert guest.ran == [] and guest.files == {} and snapshots(env) == []


def test_the_lab_demo_agent_answers_a_vm_created_through_the_api(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    # What the demo runs: `python -m tests.lab --windows-agent`, VM 102 switched on.
    env.pve.windows_agent_default = True
    code, out = update_windows(capsys, dry_run=True, as_json=False)
    assert code == 0 and "would install 2 updates" in out
    # Commands the script does not cover (doctor's osinfo) keep fakepve's answers.
    api = Proxmox(connection(ProxmoxSettings(), env.env))
    osinfo = api.get("/nodes/pve1/qemu/102/agent/get-osinfo")["result"]
    assert osinfo["id"] == "mswindows"


def test_the_run_is_journaled_with_pending_for_status_and_metrics(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    windows(env, processes=["RustClient.exe"])
    assert run(["update", "windows", "--config", str(EXAMPLE)]) == 0
    assert "reboot pending, held" in capsys.readouterr().out
    journal = Journal(tmp_path / "state")
    try:
        (last,) = journal.runs("update windows", limit=1, exact=True)
    finally:
        journal.close()
    assert last.result == "ok"
    assert last.summary["pending"] == {"win11-gaming": 1}
    assert last.summary["guests"][0]["result"] == "held"
    metrics = (tmp_path / "nixmox.prom").read_text()
    assert 'nixmox_pending_updates{target="win11-gaming"} 1.0' in metrics
    # A held reboot is no failed update, for the metrics and the history alike.
    assert 'nixmox_guest_update_last_success{id="qemu/102",name="win11-gaming"} 1.0' in metrics
    assert run(["history", "--job", "update windows"]) == 0
    history = capsys.readouterr().out
    assert "0 guests updated, 1 held" in history and "reboot pending" not in history
    run(["status", "--json", "--config", str(EXAMPLE)])
    status = json.loads(capsys.readouterr().out)
    (win,) = [g for g in status["guests"] if g["name"] == "win11-gaming"]
    assert (win["pending_updates"], win["last_update"]) == (1, "ok")


def test_guest_selection_errors_are_one_line(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["update", "windows", "--config", str(EXAMPLE), "--guest", "nixos-lxc"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['nixmox: --guest nixos-lxc: its [guests.update] method is not "windows"']


# -- pure decisions -----------------------------------------------------------------

BUSY = st.lists(st.sampled_from(["RustClient.exe", "steamwebhelper.exe"]), unique=True)
WHEN = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
)


@given(busy=BUSY, steam=st.booleans(), now=WHEN)
def test_reboot_policy_verdicts(busy: list[str], steam: bool, now: datetime) -> None:
    def verdict(policy: str) -> bool:
        return reboot_verdict(
            RebootPolicy(policy=policy),  # type: ignore[arg-type]
            now=now,
            zone=VIENNA,
            busy=busy,
            steam_downloading=steam,
        ).allowed

    assert verdict("never") is False
    assert verdict("allowed") is True
    # when-idle: never while a busy process runs or Steam downloads.
    assert verdict("when-idle") is (not busy and not steam)
    # A window policy without a window never reboots.
    assert verdict("window") is False


@given(now=WHEN, busy=BUSY)
def test_window_policy_follows_the_window_whatever_runs(now: datetime, busy: list[str]) -> None:
    policy = RebootPolicy(policy="window", window="Sun *-*-* 04:00:00")
    got = reboot_verdict(policy, now=now, zone=VIENNA, busy=busy, steam_downloading=True)
    local = now.astimezone(VIENNA)
    assert got.allowed is (local.weekday() == 6 and local.hour == 4)


def test_window_open_examples() -> None:
    sunday = datetime(2026, 11, 29, 3, 30, tzinfo=UTC)  # 04:30 in Vienna
    assert window_open("Sun *-*-* 04:00:00", sunday, VIENNA)
    assert not window_open("Sun *-*-* 04:00:00", sunday + timedelta(hours=1), VIENNA)
    assert not window_open("Sun *-*-* 04:00:00", sunday - timedelta(days=1), VIENNA)
    assert window_open("Sat,Sun *-*-* 02..05:00", sunday, VIENNA)
    # A zone in the spec wins over the inventory's.
    assert not window_open("Sun *-*-* 04:00:00 UTC", sunday, VIENNA)
    assert window_open("Sun *-*-* 03:00:00 UTC", sunday, VIENNA)
    assert window_open("*-*~01 04:00", datetime(2026, 11, 30, 3, 10, tzinfo=UTC), VIENNA)


@given(code=st.integers(min_value=-1, max_value=9), reboot=st.booleans())
def test_install_result_codes(code: int, reboot: bool) -> None:
    got = interpret_install(
        {
            "result_code": code,
            "reboot_required": reboot,
            "updates": [{"kb": "KB1", "result_code": code}],
        }
    )
    assert got.failed is (code not in (2, 3))
    # A reboot is asked for only after something installed.
    assert got.reboot_required is (reboot and not got.failed)
    assert got.installed == (() if got.failed else ("KB1",))


def test_install_with_errors_names_what_failed() -> None:
    got = interpret_install(
        {
            "result_code": 3,
            "reboot_required": True,
            "updates": [{"kb": "KB1", "result_code": 2}, {"kb": "KB2", "result_code": 4}],
        }
    )
    assert not got.failed and got.message == "installed 1 update (KB2 failed)"
    failed = interpret_install({"result_code": 4, "hresult": -2145124329, "stage": "download"})
    assert failed.message == "download failed (HRESULT 0x80240017)"


def test_a_download_failure_on_a_running_vm_with_policy_never_stops_nothing() -> None:
    failed = interpret_install({"result_code": 4, "stage": "download", "hresult": -2145844844})
    assert failed.failed and not failed.touched
    never = reboot_verdict(
        RebootPolicy(policy="never"),
        now=datetime(2026, 11, 25, 19, tzinfo=UTC),
        zone=VIENNA,
        busy=[],
        steam_downloading=False,
    )
    got = after_failure(touched=failed.touched, earlier=False, running=True, verdict=never)
    assert not got.rollback and not got.keep_snapshot


@given(
    touched=st.booleans(),
    earlier=st.booleans(),
    running=st.booleans(),
    allowed=st.none() | st.booleans(),
)
def test_a_rollback_needs_a_change_and_never_stops_a_protected_running_vm(
    touched: bool, earlier: bool, running: bool, allowed: bool | None
) -> None:
    verdict = None if allowed is None else RebootVerdict(allowed, "why")
    got = after_failure(touched=touched, earlier=earlier, running=running, verdict=verdict)
    # Nothing changed: nothing to roll back.
    if not touched:
        assert not got.rollback
    # A running VM is stopped by the rollback: only when the policy allows it now.
    if got.rollback and running:
        assert allowed is True
    if touched and (not running or allowed):
        assert got.rollback
    # The snapshot stays whenever it protects something.
    assert got.keep_snapshot is (touched or earlier)


@given(codes=st.lists(st.sampled_from([2, 3, 4, 5]), min_size=1, max_size=4))
def test_a_failed_install_touched_the_guest_only_when_an_update_went_in(codes: list[int]) -> None:
    overall = 4 if all(c == 4 for c in codes) else 5
    updates = [{"kb": f"KB{n}", "result_code": c} for n, c in enumerate(codes)]
    got = interpret_install({"result_code": overall, "stage": "install", "updates": updates})
    assert got.failed
    assert got.touched is any(c in (2, 3) for c in codes)
    # Without per-update codes nobody knows what stayed: count it as changed.
    assert interpret_install({"result_code": 5, "stage": "install"}).touched


def test_pending_file_renames_are_information_not_a_pending_reboot() -> None:
    pre = Precheck.from_report(
        {"build": "10.0.26100.1", "boot_time": "2026-11-25T06:00:00Z", "reboot_pending": False,
         "reboot_reasons": [], "pending_file_renames": True}
    )  # fmt: skip
    assert pre.file_renames and not pre.reboot_pending and precheck_blocker(pre) is None


@pytest.mark.parametrize(
    ("reported", "normal"),
    [
        ("2026-11-25T06:00:00Z", "2026-11-25T06:00:00Z"),
        ("2026-11-25T06.00.00Z", "2026-11-25T06:00:00Z"),  # fi-FI's time separator
        ("", ""),
    ],
)
def test_localized_boot_times_are_normalized(reported: str, normal: str) -> None:
    assert boot_time_text(reported) == normal
    assert Precheck.from_report({"boot_time": reported}).boot_time == normal


def test_servicing_after_a_boot_is_the_processes_and_cbs_pending() -> None:
    busy = Precheck("b", "t", True, ("CBS RebootPending",), ("TiWorker",))
    assert still_servicing(busy) == "TiWorker, CBS RebootPending"
    # Windows Update's own RebootRequired alone is no servicing.
    assert still_servicing(Precheck("b", "t", True, ("WindowsUpdate RebootRequired",))) is None


def test_constrained_language_blocks_the_update() -> None:
    pre = Precheck("b", "t", language_mode="ConstrainedLanguage")
    blocked = precheck_blocker(pre)
    assert blocked is not None and blocked[0] == "failed"
    assert precheck_blocker(Precheck("b", "t", language_mode="FullLanguage")) is None


def test_a_report_after_a_byte_order_mark_is_read() -> None:
    result = CommandResult(0, '\ufeff{"ok": true, "n": 1}\r\n', "")
    assert parse_report("update-scan", result) == {"ok": True, "n": 1}


@given(rounds=st.integers(0, 12), max_rounds=st.integers(1, 10), found=st.integers(0, 50))
def test_rounds_are_bounded(rounds: int, max_rounds: int, found: int) -> None:
    step = after_scan(rounds, max_rounds, found)
    assert step == "done" if found == 0 else step in ("install", "limit")
    if step == "install":
        assert rounds < max_rounds


def test_only_problem_code_43_is_a_postcheck_failure() -> None:
    report = {
        "gpus": [
            {"name": "NVIDIA GeForce RTX 3060", "problem_code": 43},
            {"name": "Basic Display", "problem_code": 22},
        ]
    }
    assert postcheck_problems(report) == ["GPU NVIDIA GeForce RTX 3060 reports problem code 43"]
    assert postcheck_problems({"gpus": [{"name": "x", "problem_code": 0}]}) == []


# -- on the Proxmox host without an API token ---------------------------------------

POWERSHELL_STANDIN = r"""#!/usr/bin/python3
# A recording stand-in for powershell.exe -EncodedCommand, doing what nixmox's two
# command-line scripts do: guest-folder.ps1 reports a folder for SYSTEM and
# Administrators only; run-verified.ps1 hashes the written script (qemu-ga wrote it
# into its working directory, backslashes and all) and refuses a mismatch, else the
# script "runs": its answer is $WIN_STATE/NAME.json (NAME.after.json once
# update-install has run). $WIN_STATE/swap names a script another account rewrites
# after nixmox wrote it.
import base64, hashlib, json, os, sys
state = os.environ["WIN_STATE"]
text = base64.b64decode(sys.argv[sys.argv.index("-EncodedCommand") + 1]).decode("utf-16-le")
header, _, body = text.partition("\n")
values = json.loads(header.split(" ConvertFrom-Json ", 1)[1][1:-1].replace("''", "'"))
log = open(os.path.join(state, "powershell.log"), "a")
if "icacls" in body:
    log.write(f"guest-folder {values['Path']}\n")
    print(json.dumps({"ok": True, "path": values["Path"], "created": True, "directory": True,
                      "link": False, "children": [],
                      "sddl": "O:BAG:SYD:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"}))
    sys.exit(0)
script = values["Script"]
name = script.rsplit("\\", 1)[-1][: -len(".ps1")]
swap = os.path.join(state, "swap")
if os.path.exists(swap) and open(swap).read().strip() == name:
    with open(script, "a") as planted:
        planted.write("Start-Process C:\\Users\\Public\\evil.exe\n")
found = hashlib.sha256(open(script, "rb").read()).hexdigest().upper()
if found != values["Sha256"]:
    log.write(f"refused {name}\n")
    print(json.dumps({"ok": False, "refused": f"{script} is not the script nixmox wrote"}))
    sys.exit(3)
log.write(f"verified {name} {json.dumps(values['Params'])}\n")
if name == "update-install":
    open(os.path.join(state, "installed"), "w").close()
answer = os.path.join(state, f"{name}.json")
after = os.path.join(state, f"{name}.after.json")
if os.path.exists(os.path.join(state, "installed")) and os.path.exists(after):
    answer = after
sys.stdout.write(open(answer).read())
"""

QM_STANDIN = r"""#!/bin/sh
# A recording stand-in for Proxmox's qm.
log="$WIN_STATE/qm.log"; snaps="$WIN_STATE/snaps"
echo "$*" >> "$log"
touch "$snaps"
case $1 in
  status) echo "status: running" ;;
  listsnapshot)
    while read -r s; do echo "\`-> $s 2026-11-25 19:00:00 before a nixmox update"; done < "$snaps"
    echo "    \`-> current You are here!" ;;
  snapshot) echo "$3" >> "$snaps" ;;
  delsnapshot) grep -vx "$3" "$snaps" > "$snaps.new"; mv "$snaps.new" "$snaps" ;;
  rollback) ;;
  *) exit 2 ;;
esac
"""

MSRT = {"kb": "KB890830", "title": "MSRT", "reboot": False}
ANSWERS: dict[str, dict[str, Any]] = {
    "update-precheck": {
        "ok": True,
        "build": "10.0.26100.1",
        "boot_time": "2026-11-25T06:00:00Z",
        "servicing": [],
        "free_gb": 50,
        "busy": [],
    },
    "update-scan": {"ok": True, "count": 1, "updates": [MSRT]},
    "update-scan.after": {"ok": True, "count": 0, "updates": []},
    "update-install": {
        "ok": True,
        "result_code": 2,
        "reboot_required": False,
        "updates": [{**MSRT, "result_code": 2}],
    },
    "update-postcheck": {"ok": True, "boot_time": "2026-11-25T06:00:00Z", "gpus": []},
}


def on_the_host(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    swap: str | None = None,
) -> tuple[int, dict[str, Any], Path]:
    """update windows without a token: the real qemu-ga runs the (stand-in)
    powershell.exe, qm is a recording stand-in. (exit code, the guest's row, state)."""
    from tests.peers.qga import QemuGuestAgent
    from tests.peers.require import need_binary, need_root

    need_root("qemu-ga")
    binary = need_binary("qemu-ga", "qemu-guest-agent")
    bin_dir, state, sockets = tmp_path / "bin", tmp_path / "win", tmp_path / "qga"
    for d in (bin_dir, state, sockets):
        d.mkdir()
    standins = (("powershell.exe", POWERSHELL_STANDIN), ("qm", QM_STANDIN))
    for name, text in standins:
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    for name, answer in ANSWERS.items():
        (state / f"{name}.json").write_text(json.dumps(answer) + "\r\n")
    if swap is not None:
        (state / "swap").write_text(swap)
    for key in ("NIXMOX_PVE_URL", "NIXMOX_PVE_TOKEN_ID", "NIXMOX_PVE_TOKEN", "NIXMOX_PVE_CA_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path('/usr/bin')}:{Path('/bin')}")
    monkeypatch.setenv("WIN_STATE", str(state))
    monkeypatch.setenv("NIXMOX_QGA_DIR", str(sockets))
    monkeypatch.setenv("NIXMOX_STATE_DIR", str(tmp_path / "journal"))
    with QemuGuestAgent(qemu_ga=binary) as qga:
        (sockets / f"{VMID}.qga").symlink_to(qga.socket_path)
        code = update_windows_command.run(
            EXAMPLE, ["win11-gaming"], dry_run=False, as_json=True, clock=FakeClock(), timing=FAST
        )
    return code, json.loads(capsys.readouterr().out)["guests"][0], state


def test_on_the_host_without_a_token_the_agent_socket_and_qm_are_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, row, state = on_the_host(tmp_path, monkeypatch, capsys)
    assert (code, row["result"]) == (0, "ok"), row
    assert row["message"] == "installed 1 update, 1 round, 0 reboots"
    assert f"via agent socket {tmp_path}/qga/{VMID}.qga" in row["steps"][0]
    qm = (state / "qm.log").read_text().splitlines()
    [snap] = [q.split()[2] for q in qm if q.startswith("snapshot 102 ")]
    assert update_snapshot_time(snap) == FakeClock().start
    assert qm[0] == "status 102"
    assert f"snapshot 102 {snap} --vmstate 0 --description before a nixmox update" in qm
    assert f"delsnapshot 102 {snap}" in qm and not any(q.startswith("rollback") for q in qm)
    assert (state / "snaps").read_text() == ""
    # The folder is prepared first; every script ran only after its hash matched.
    ran = (state / "powershell.log").read_text().splitlines()
    assert ran[0] == "guest-folder C:\\ProgramData\\nixmox"
    assert all(line.startswith("verified ") for line in ran[1:])
    assert "verified update-install {}" in ran


def test_a_script_rewritten_after_nixmox_wrote_it_never_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Through the real qemu-ga: the file it wrote is changed before it runs.
    code, row, state = on_the_host(tmp_path, monkeypatch, capsys, swap="update-install")
    assert (code, row["result"]) == (1, "failed"), row
    assert "update-install.ps1: " in row["message"]
    assert "is not the script nixmox wrote" in row["message"]
    ran = (state / "powershell.log").read_text().splitlines()
    assert "refused update-install" in ran and not (state / "installed").exists()


def test_neither_api_nor_agent_socket_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in ("NIXMOX_PVE_URL", "NIXMOX_PVE_TOKEN_ID", "NIXMOX_PVE_TOKEN", "NIXMOX_PVE_CA_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NIXMOX_QGA_DIR", str(tmp_path))
    assert run(["update", "windows", "--config", str(EXAMPLE), "--dry-run"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert (
        line.startswith("nixmox: proxmox.ca_file") and f"no agent socket {tmp_path}/102.qga" in line
    )


# -- the packaged scripts ----------------------------------------------------------

# The keys nixmox reads from each script's report (windows/update.py).
READS = {
    "update-precheck": [
        "build", "boot_time", "reboot_pending", "reboot_reasons", "servicing", "free_gb",
        "busy", "steam_downloading", "pending_file_renames", "language_mode",
    ],
    "update-scan": ["updates", "kb", "title", "reboot", "skipped", "reason"],
    "update-install": ["stage", "result_code", "hresult", "reboot_required", "updates",
                       "skipped"],
    "update-postcheck": ["boot_time", "gpus", "name", "problem_code", "msi", "rust",
                         "state_flags", "installed"],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(READS))
def test_each_script_is_packaged_and_reports_what_nixmox_reads(name: str) -> None:
    from nixmox.windows.scripts import script_text

    text = script_text(name)
    assert text.isascii()  # Windows PowerShell 5.1 reads a BOM-less file as ANSI
    assert "$ErrorActionPreference = 'Stop'" in text
    # One JSON line on success and on failure alike.
    assert text.count("Write-Report ([ordered]@{ ok = $false; error = $_.Exception.Message })") == 1
    assert "ConvertTo-Json -InputObject $report -Compress" in text
    for key in READS[name]:
        assert f"{key} = " in text, f"{name}.ps1 does not report {key}"


class _StopAfter(list[str]):
    """The guest's record of what ran; a real SIGINT reaches nixmox once ``step`` ran."""

    def __init__(self, step: str) -> None:
        super().__init__()
        self.step = step

    def append(self, item: str) -> None:
        super().append(item)
        if item == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def test_a_stop_request_ends_the_rounds_before_a_reboot_and_keeps_the_snapshot(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    guest = windows(env, after_reboot=[[update("KB5046740")]])
    guest.ran = _StopAfter("update-install")
    try:
        code, row = update_windows(capsys)
        assert interrupt.exit_code() == 130
    finally:
        interrupt.reset()
    # The round in flight finished; no reboot and no second round started after the signal.
    assert guest.ran.count("update-install") == 1 and "shutdown" not in guest.ran
    assert (code, row["result"], row["pending"]) == (0, "held", 1)
    assert row["message"].startswith("interrupted by SIGINT after 1 round: installed KB")
    assert "a reboot is pending" in row["message"] and not row["rolled_back"]
    assert snapshots(env) == [row["snapshot"]]  # kept for the next run
    journal = Journal(Path(os.environ["NIXMOX_STATE_DIR"]))
    try:
        [run_row] = journal.runs("update windows")
    finally:
        journal.close()
    assert run_row.result == "interrupted" and run_row.summary["interrupted"] == "SIGINT"
