"""`nixmox backup` and `backup verify` against the lab's stateful vzdump."""

from __future__ import annotations

import json
import os
import tomllib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import tomlkit

from nixmox.adapters.journal import Journal
from nixmox.backup.archives import archives_of, parse_volid
from nixmox.cli import backup as backup_command
from nixmox.cli.main import run
from nixmox.rules.retention import Item, Keep, Mark, prune
from tests.clock import FakeClock
from tests.hosts import write_host
from tests.lab.serving import RunningLab

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "homelab.toml"
VIENNA = ZoneInfo("Europe/Vienna")
KEEP = Keep(last=3, daily=7, weekly=4, monthly=6)  # the example's [backups.keep]


@pytest.fixture
def env(lab_env: RunningLab) -> RunningLab:
    """The shared lab environment, seeded with the example's guests."""
    lab_env.pve.add_declared_guests()
    return lab_env


def seed_days(lab: RunningLab, vmid: int, kind: str, days: int = 40) -> list[str]:
    """One archive a night at 02:30 for ``days`` nights before 2026-11-20."""
    start = datetime(2026, 11, 20, 2, 30)
    return [
        lab.pve.seed_backup("backups", vmid, kind, start - timedelta(days=d))
        for d in range(1, days + 1)
    ]


def volids(lab: RunningLab, vmid: int | None = None) -> set[str]:
    return {f"backups:{name}" for name in lab.pve.backups("backups", vmid)}


def backup_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = run(["backup", "--json", "--config", str(EXAMPLE), *args])
    return code, json.loads(capsys.readouterr().out)


def expected_survivors(lab: RunningLab, vmid: int, kind: str) -> set[str]:
    listing = [
        {"volid": v, **rec}
        for v, rec in ((f"backups:{n}", r) for n, r in lab.pve.backups("backups", vmid).items())
    ]
    archives = archives_of(listing, vmid, kind, VIENNA)
    decisions = prune([Item(a.time, a.protected, a.volid) for a in archives], KEEP, VIENNA)
    return {d.item.ref for d in decisions if d.mark is not Mark.REMOVE}


def test_a_run_keeps_exactly_what_the_rule_keeps(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    pve = env.pve
    for vmid, kind in ((100, "lxc"), (101, "qemu"), (102, "qemu")):
        seed_days(env, vmid, kind)
    protected = pve.seed_backup("backups", 101, "qemu", datetime(2026, 9, 1, 2, 30), protected=True)
    # A hand-named copy and a foreign guest's archives: never touched.
    pve.seed_backup("backups", 555, "qemu", datetime(2026, 8, 1, 2, 30))
    foreign = volids(env, 555)
    hand = "backups:backup/vzdump-qemu-101-before-upgrade.vma.zst"
    pve._add_volume(
        "backups",
        hand.split(":", 1)[1],
        {"content": "backup", "format": "vma.zst", "size": 1, "ctime": 1, "vmid": 101},
    )
    code, report = backup_json(capsys)
    assert code == 0, report
    for vmid, kind in ((100, "lxc"), (101, "qemu"), (102, "qemu")):
        have = {v for v in volids(env, vmid) if parse_volid(v, VIENNA)}
        # The rule applied afresh to what is left keeps all of it: nothing else should go.
        assert have == expected_survivors(env, vmid, kind)
        row = next(r for r in report["guests"] if r["vmid"] == vmid)
        assert row["result"] == "ok" and row["archive"] in have and row["removed"]
        assert row["guest"] == row["name"]  # verify's key too
        assert all(r not in have for r in row["removed"])
    assert protected in volids(env, 101) and hand in volids(env, 101)
    assert volids(env, 555) == foreign
    [journal] = Journal(Path(os.environ["NIXMOX_STATE_DIR"])).runs("backup")
    assert journal.result == "ok" and len(journal.summary["guests"]) == 3


def test_archive_ages_come_from_the_listing_not_the_name_read_in_our_zone(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    # The node runs in New York, the inventory says Vienna: vzdump's names are in
    # New York time, six hours behind. Two archives a day (01:00 and 12:00 in Vienna)
    # put the 01:00 one on the previous day by its name read in Vienna.
    env.pve.node_zone = ZoneInfo("America/New_York")
    start = datetime(2026, 11, 20, 1, 0, tzinfo=VIENNA)
    for d in range(20):
        for hours in (0, 11):
            env.pve.seed_backup("backups", 101, "qemu", start - timedelta(days=d, hours=-hours))
    name = next(iter(env.pve.backups("backups", 101)))
    assert "-19_00_00." in name or "-06_00_00." in name  # New York names
    code, report = backup_json(capsys, "--guest", "nixos-vm")
    assert code == 0, report
    assert volids(env, 101) == expected_survivors(env, 101, "qemu")
    # Beyond keep-last, every kept archive is its Vienna day's last one (12:00), never a 01:00.
    kept = sorted(r["ctime"] for r in env.pve.backups("backups", 101).values())[:-3]
    assert kept and {datetime.fromtimestamp(t, VIENNA).hour for t in kept} == {12}


def test_a_failed_backup_keeps_every_archive_and_the_others_are_pruned(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    for vmid, kind in ((100, "lxc"), (101, "qemu")):
        seed_days(env, vmid, kind, days=20)
    env.pve.fail_backup(101, "unable to access disk: Input/output error")
    before = volids(env, 101)
    code, report = backup_json(capsys, "--guest", "nixos-lxc", "--guest", "nixos-vm")
    assert code == 1
    vm = next(r for r in report["guests"] if r["vmid"] == 101)
    assert vm["result"] == "failed" and "Input/output error" in vm["message"]
    assert volids(env, 101) == before  # nothing pruned
    ct = next(r for r in report["guests"] if r["vmid"] == 100)
    assert ct["result"] == "ok" and ct["removed"]


def test_a_locked_guest_is_waited_for_then_reported(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    env.pve.snapshot_lock(100, "backup")
    inv = tmp_path / "n.toml"
    inv.write_text(EXAMPLE.read_text().replace('lock_wait = "10min"', 'lock_wait = "1min"'))
    clock = FakeClock()
    code = backup_command.backup(
        inv, ["nixos-lxc", "nixos-vm"], dry_run=False, protected=False, as_json=True, clock=clock
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    ct = next(r for r in report["guests"] if r["vmid"] == 100)
    assert ct["result"] == "failed" and "locked (backup)" in ct["message"]
    assert "for 60 s" in ct["message"] and clock.monotonic() >= 60  # waited it out
    assert env.pve.guest(100).config.get("lock") == "backup"  # someone else's: untouched
    assert next(r for r in report["guests"] if r["vmid"] == 101)["result"] == "ok"


def test_an_api_error_while_deleting_is_reported_and_the_rest_goes_on(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    seeded = seed_days(env, 101, "qemu", days=20)
    oldest = seeded[-1]
    env.pve.fail(
        "DELETE",
        f"/nodes/pve1/storage/backups/content/{oldest}",
        403,
        "Permission check failed (/storage/backups, Datastore.Allocate)",
    )
    code, report = backup_json(capsys, "--guest", "nixos-vm")
    assert code == 1
    row = report["guests"][0]
    assert row["result"] == "ok" and any(
        oldest in e and "Permission check failed" in e for e in row["errors"]
    )
    assert oldest in volids(env, 101)
    assert len(row["removed"]) >= 5 and all(v not in volids(env, 101) for v in row["removed"])


def test_protected_flag_and_notes(env: RunningLab, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = backup_json(capsys, "--guest", "nixos-vm", "--protected")
    assert code == 0
    volid = report["guests"][0]["archive"]
    record = env.pve.backups("backups", 101)[volid.split(":", 1)[1]]
    assert record.get("protected") and record.get("notes") == "nixos-vm (nixmox)"


def test_dry_run_changes_nothing(env: RunningLab, capsys: pytest.CaptureFixture[str]) -> None:
    seed_days(env, 100, "lxc", days=20)
    before = volids(env)
    code, report = backup_json(capsys, "--dry-run")
    assert code == 0 and volids(env) == before
    ct = next(r for r in report["guests"] if r["vmid"] == 100)
    assert ct["result"] == "planned" and ct["removed"]
    assert not [r for r in env.pve.requests if r[0] != "GET"]


def test_templates_are_skipped_and_unknown_guests_refused(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    inv = tmp_path / "n.toml"
    inv.write_text(
        EXAMPLE.read_text()
        + '\n[[guests]]\nname = "tpl"\nvmid = 9000\nkind = "vm"\nnode = "pve1"\n'
    )
    assert run(["backup", "--json", "--config", str(inv), "--guest", "tpl"]) == 0
    assert json.loads(capsys.readouterr().out)["guests"][0]["result"] == "skipped"
    assert run(["backup", "--config", str(inv), "--guest", "nope"]) == 1
    assert "--guest nope: no such guest" in capsys.readouterr().err


def test_minimal_inventory_works_as_it_is(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    inv = tmp_path / "n.toml"
    inv.write_text(
        (ROOT / "tests" / "test_inventory.py")
        .read_text()
        .split('BACKUP_ONLY = """\\\n')[1]
        .split('"""')[0]
    )
    # A stock Proxmox's `local` takes backups; the example's lab does not by default.
    from nixmox.adapters.proxmox.client import Proxmox
    from nixmox.adapters.proxmox.settings import Connection

    api = Proxmox(Connection(env.url, env.token_id, env.token, env.ca_file))
    api.put("/storage/local", content="iso,vztmpl,snippets,backup")
    env.pve.seed_backup("local", 100, "lxc", datetime(2026, 1, 1, 2, 30))
    code = run(["backup", "--config", str(inv)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "nixos-lxc" in out and "1 of 1 guest backed up" in out


# -- restore-verify -------------------------------------------------------------


def test_verify_restores_boots_and_removes_the_scratch_guest(
    lab_root_env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    # As root@pam: only root may take the Windows copy's raw hostpci devices away
    # (test_restore covers the token's refusal).
    env = lab_root_env
    env.pve.add_declared_guests()
    assert run(["backup", "--config", str(EXAMPLE)]) == 0
    capsys.readouterr()
    code = run(["backup", "verify", "--json", "--config", str(EXAMPLE)])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    assert [g["ok"] for g in report["guests"]] == [True, True, True]
    assert {g["scratch"] for g in report["guests"]} == {9900}
    # Each row names its guest under both keys backup's own rows use too.
    names = ["nixos-lxc", "nixos-vm", "win11-gaming"]
    assert [g["guest"] for g in report["guests"]] == [g["name"] for g in report["guests"]]
    assert sorted(g["guest"] for g in report["guests"]) == names
    assert 9900 not in {g.vmid for g in env.pve.vms}
    starts = [r for r in env.pve.requests if r[1].endswith("/9900/status/start")]
    assert len(starts) == 3
    links = [r for r in env.pve.requests if r[0] == "PUT" and "/9900/config" in r[1]]
    nets = [r for r in links if b"net" in r[2]]
    assert nets and all(b"link_down%3D1" in r[2] or b"link_down=1" in r[2] for r in nets)
    # every scratch guest got this run's mark before anything else was done to it
    marks = [r for r in links if b"description=nixmox+backup+verify" in r[2]]
    assert len(marks) == 3 and links[0] in marks
    # then what each copy must not keep goes in a PUT of its own (onboot; the Windows
    # copy's devices too)
    removals = [r for r in links if b"delete=" in r[2]]
    assert len(links) == 6 and [links.index(r) for r in removals] == [1, 3, 5]
    assert [b"hostpci0" in r[2] for r in removals] == [False, False, True]


def test_verify_copy_of_a_passthrough_vm_starts_without_its_devices(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    """The gamer plays on VM 102 while its backup is verified: the scratch copy must
    not take the GPU (the lab refuses a start whose device another running VM holds)."""
    assert run(["backup", "--config", str(EXAMPLE), "--guest", "win11-gaming"]) == 0
    capsys.readouterr()
    env.pve.find("pve1", 102).status = "running"
    argv = ["backup", "verify", "--json", "--config", str(EXAMPLE), "--guest", "win11-gaming"]
    code = run(argv)
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["guests"][0]["ok"], report
    puts = [r[2] for r in env.pve.requests if r[0] == "PUT" and "/9900/config" in r[1]]
    removed = [p for p in puts if b"delete=" in p]
    assert removed and all(b"hostpci0" in p and b"hostpci1" in p for p in removed), puts


def test_verify_fails_cleanly_when_the_start_fails(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["backup", "--config", str(EXAMPLE), "--guest", "nixos-vm"]) == 0
    capsys.readouterr()
    env.pve.fail("POST", "/nodes/pve1/qemu/9900/status/start", error="qemu_exited_code")
    code = run(["backup", "verify", "--json", "--config", str(EXAMPLE), "--guest", "nixos-vm"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    row = report["guests"][0]
    assert not row["ok"] and "QEMU exited with code 1" in row["message"] and row["cleaned"]
    assert 9900 not in {g.vmid for g in env.pve.vms}


def test_verify_restores_a_container_without_a_declared_rootfs_onto_a_rootdir_storage(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A maintained-only container (no rootfs in the inventory) and a verify storage for
    # VM images only: left to itself PVE restores to `local`, which takes no containers.
    data = tomllib.loads(EXAMPLE.read_text())
    ct = next(g for g in data["guests"] if g["name"] == "nixos-lxc")
    del ct["rootfs"]
    inv = tmp_path / "n.toml"
    inv.write_text(tomlkit.dumps(data))
    assert run(["backup", "--config", str(inv), "--guest", "nixos-lxc"]) == 0
    capsys.readouterr()
    code = run(["backup", "verify", "--json", "--config", str(inv), "--guest", "nixos-lxc"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    restores = [r for r in env.pve.requests if r[0] == "POST" and r[1].endswith("/nodes/pve1/lxc")]
    assert restores and b"storage=ct-disks" in restores[-1][2]


def test_verify_stops_a_restore_that_outlives_its_own_timeout_and_removes_its_guest(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 24 item 10: the scratch guest is `lock: create` until the restore ends.
    from nixmox.adapters.proxmox.client import Proxmox
    from nixmox.adapters.proxmox.settings import connection
    from nixmox.backup.verify import verify_guest
    from nixmox.inventory.load import load_inventory

    assert run(["backup", "--config", str(EXAMPLE), "--guest", "nixos-vm"]) == 0
    capsys.readouterr()
    inv = load_inventory(EXAMPLE)
    assert inv.backups is not None and inv.backups.verify is not None
    settings = inv.backups.model_copy(
        update={"verify": inv.backups.verify.model_copy(update={"restore_timeout": "30min"})}
    )
    [guest] = [g for g in inv.guests if g.name == "nixos-vm"]
    env.pve.restore_wall_secs = 600.0  # far longer than the test
    before = {name: dict(s["volumes"]) for name, s in env.pve.storages.items()}
    clock = FakeClock()
    result = verify_guest(
        Proxmox(connection(inv.proxmox)), guest, settings, VIENNA, inv.storages, clock
    )
    assert not result.ok and result.cleaned, result
    assert "still running after 1800 s" in result.message
    assert result.message.endswith("; stopped the restore task")
    assert 9900 not in {g.vmid for g in env.pve.vms}
    assert {name: dict(s["volumes"]) for name, s in env.pve.storages.items()} == before
    # The boot timeout (10 min) did not cut the restore short.
    assert 1800 <= clock.monotonic() < 1800 + 60


def test_verify_without_any_archive_fails(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["backup", "verify", "--config", str(EXAMPLE), "--guest", "win11-gaming"]) == 1
    assert "no archive of win11-gaming" in capsys.readouterr().out


def test_proxmox_scheduler_job_is_kept_in_sync_by_plan_and_apply(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    inv = tmp_path / "n.toml"
    text = EXAMPLE.read_text().replace('scheduler = "nixmox"', 'scheduler = "proxmox"')
    inv.write_text(text)
    code = run(["plan", "--json", "--detailed-exitcode", "--config", str(inv)])
    report = json.loads(capsys.readouterr().out)
    assert code == 2 and report["jobs"][0]["action"] == "create"
    host = write_host(tmp_path / "host")
    assert run(["apply", "--yes", "--host-root", str(host), "--config", str(inv)]) == 0
    capsys.readouterr()
    from nixmox.adapters.proxmox.client import Proxmox
    from nixmox.adapters.proxmox.settings import Connection

    api = Proxmox(Connection(env.url, env.token_id, env.token, env.ca_file))
    job = next(j for j in api.get("/cluster/backup") if j["id"] == "nixmox-backup")
    assert job["prune-backups"] == "keep-last=3,keep-daily=7,keep-weekly=4,keep-monthly=6"
    assert set(str(job["vmid"]).split(",")) == {"100", "101", "102"}
    assert run(["plan", "--detailed-exitcode", "--config", str(inv)]) == 0
    capsys.readouterr()
    inv.write_text(text.replace("keep-monthly = 6", "keep-monthly = 12"))
    code = run(["plan", "--json", "--detailed-exitcode", "--config", str(inv)])
    [change] = json.loads(capsys.readouterr().out)["jobs"][0]["changes"]
    assert code == 2 and change["key"] == "prune-backups" and "keep-monthly=12" in change["new"]


class _TakesTheScratchVmidFirst:
    """The API, except that someone creates a guest at the scratch VMID just before the
    restore POST (after nixmox found it free)."""

    def __init__(self, api: Any, vmid: int) -> None:
        self._api, self._vmid, self._done = api, vmid, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)

    def post(self, path: str, **params: Any) -> Any:
        if path == "/nodes/pve1/qemu" and "archive" in params and not self._done:
            self._done = True
            from nixmox.adapters.proxmox.tasks import wait

            wait(self._api, self._api.post(path, vmid=self._vmid, name="someone-elses", memory=512))
        return self._api.post(path, **params)


def test_verify_never_destroys_a_scratch_vmid_taken_after_its_check(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    from nixmox.adapters.proxmox.client import Proxmox
    from nixmox.adapters.proxmox.settings import connection
    from nixmox.backup.verify import verify_guest
    from nixmox.inventory.load import load_inventory

    assert run(["backup", "--config", str(EXAMPLE), "--guest", "nixos-vm"]) == 0
    capsys.readouterr()
    inv = load_inventory(EXAMPLE)
    assert inv.backups is not None
    [guest] = [g for g in inv.guests if g.name == "nixos-vm"]
    api = _TakesTheScratchVmidFirst(Proxmox(connection(inv.proxmox)), 9900)
    result = verify_guest(api, guest, inv.backups, VIENNA, inv.storages)  # type: ignore[arg-type]
    assert not result.ok and "already exists" in result.message and result.cleaned
    [other] = [g for g in env.pve.vms if g.vmid == 9900]
    assert other.name == "someone-elses"
    assert not [r for r in env.pve.requests if r[0] == "DELETE" and "/9900" in r[1]]


def test_verify_leaves_alone_a_scratch_guest_without_its_mark(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    """Someone rewrote the scratch guest's description mid-run: it is no longer provably ours."""
    assert run(["backup", "--config", str(EXAMPLE), "--guest", "nixos-vm"]) == 0
    capsys.readouterr()
    env.pve.fail("POST", "/nodes/pve1/qemu/9900/status/start", error="qemu_exited_code")
    from nixmox.adapters.proxmox.client import Proxmox

    original = Proxmox.put

    def put(self: Proxmox, path: str, **params: Any) -> Any:
        answer = original(self, path, **params)
        if path.endswith("/9900/config") and "description" in params:
            original(self, path, description="a person's guest now")
        return answer

    import unittest.mock

    with unittest.mock.patch.object(Proxmox, "put", put):
        code = run(["backup", "verify", "--json", "--config", str(EXAMPLE), "--guest", "nixos-vm"])
    row = json.loads(capsys.readouterr().out)["guests"][0]
    assert code == 1 and not row["ok"] and not row["cleaned"]
    assert "could NOT be removed" in row["message"]
    assert 9900 in {g.vmid for g in env.pve.vms}


def _leave_a_scratch_guest(env: RunningLab, state: Path) -> None:
    """What a verify run killed mid-boot leaves: its restored, marked copy and its record."""
    from nixmox.adapters.proxmox.client import Proxmox
    from nixmox.adapters.proxmox.settings import connection
    from nixmox.adapters.proxmox.tasks import wait
    from nixmox.backup.scratch import ScratchRecord, ScratchRecords
    from nixmox.inventory.load import load_inventory

    api = Proxmox(connection(load_inventory(EXAMPLE).proxmox))
    [volid] = volids(env, 101)
    nonce = "nixmox backup verify scratch guest, run 0123456789abcdef"
    upid = api.post("/nodes/pve1/qemu", vmid=9900, archive=volid, unique=1, description=nonce)
    wait(api, upid)
    since = datetime.now().timestamp()
    record = ScratchRecord(9900, "pve1", "qemu", nonce, "nixos-vm", volid, since, upid)
    ScratchRecords(state).save(record)


def test_verify_says_so_when_it_cannot_confirm_a_leftover_and_removes_it_once_it_can(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["backup", "--config", str(EXAMPLE), "--guest", "nixos-vm"]) == 0
    capsys.readouterr()
    state = Path(os.environ["NIXMOX_STATE_DIR"])
    _leave_a_scratch_guest(env, state)
    # The cluster cannot be read while this run looks at the leftover: a failed read is
    # not "nothing there".
    env.pve.fail("GET", "/cluster/resources", 500, "unable to read the vm list", times=1)
    code = run(["backup", "verify", "--config", str(EXAMPLE), "--guest", "nixos-vm"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "LEFT   left by an earlier run (nixos-vm): could not confirm what became of " in out
    assert "unable to read the vm list" in out
    assert "OK     nixos-vm:" in out and "-> scratch 9901:" in out  # its own copy: the next VMID
    assert 9900 in {g.vmid for g in env.pve.vms}
    assert (state / "verify-scratch" / "9900.json").exists()  # kept for the next run
    # The next run can see, and removes it.
    code = run(["backup", "verify", "--config", str(EXAMPLE), "--guest", "nixos-vm"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "CLEANED left by an earlier run (nixos-vm): removed scratch guest 9900" in out
    assert not {9900, 9901} & {g.vmid for g in env.pve.vms}
    assert run(["history", "--job", "backup verify"]) == 0
    history = capsys.readouterr().out
    assert "1 guest verified, 1 leftover scratch guest removed" in history


def test_verify_leaves_a_recorded_vmid_someone_else_reused_alone(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    from nixmox.backup.scratch import ScratchRecord, ScratchRecords

    assert run(["backup", "--config", str(EXAMPLE), "--guest", "nixos-vm"]) == 0
    capsys.readouterr()
    state = Path(os.environ["NIXMOX_STATE_DIR"])
    # A record whose restore never reached Proxmox (no task), and a person's VM at its VMID.
    since = datetime.now().timestamp()
    record = ScratchRecord(9900, "pve1", "qemu", "nonce", "nixos-vm", "backups:x", since)
    ScratchRecords(state).save(record)
    env.pve.add_vm(9900, "someone-elses", node="pve1")
    code = run(["backup", "verify", "--json", "--config", str(EXAMPLE), "--guest", "nixos-vm"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    [left] = report["leftovers"]
    assert left["outcome"] == "not ours" and "left alone" in left["message"]
    assert [g.name for g in env.pve.vms if g.vmid == 9900] == ["someone-elses"]
    assert not [r for r in env.pve.requests if r[0] == "DELETE" and r[1].endswith("/9900")]
    assert not (state / "verify-scratch" / "9900.json").exists()


# -- a stopped passthrough VM (issue 24 item 6) ------------------------------------


def test_passthrough_blocker_is_pure() -> None:
    from nixmox.backup.passthrough import blocker, pci_devices

    gpu = {"memory": "16384", "hostpci0": "0000:01:00,pcie=1,x-vga=1", "hostpci1": "0000:0b:00.3"}
    assert pci_devices(gpu) == {"01:00", "0b:00"}
    assert pci_devices({"hostpci0": "mapping=gpu,pcie=1"}) == set()
    # A mapping counts as the devices it names on the node.
    assert pci_devices({"hostpci0": "mapping=gpu,pcie=1"}, {"gpu": ["0000:01:00"]}) == {"01:00"}
    other = {"hostpci0": "01:00.1"}  # the same card's audio function
    assert "running VM 103 holds 01:00" in (blocker(gpu, [(103, other)], None) or "")
    assert blocker(gpu, [(103, {"memory": "2048"})], 32 * 1024**3) is None
    short = blocker(gpu, [], 8 * 1024**3)
    assert short is not None and "pins all its 16384 MiB, and the node has 8192 MiB free" in short
    assert blocker({"memory": "99999"}, [], 0) is None  # no passthrough: vzdump needs no start


def test_lab_reserves_passed_through_devices_on_start(env: RunningLab) -> None:
    from nixmox.adapters.proxmox.client import Proxmox
    from nixmox.adapters.proxmox.settings import connection
    from nixmox.adapters.proxmox.tasks import TaskFailed, wait
    from nixmox.inventory.load import load_inventory

    api = Proxmox(connection(load_inventory(EXAMPLE).proxmox))
    wait(api, api.post("/nodes/pve1/qemu/102/status/start"))
    wait(api, api.post("/nodes/pve1/qemu/101/status/stop"))
    # A raw address is root@pam's to set (no token may): set up as an admin would have.
    env.pve.vm(101).config["hostpci0"] = "0000:01:00.0"
    with pytest.raises(TaskFailed, match="already in use by VMID '102'"):
        wait(api, api.post("/nodes/pve1/qemu/101/status/start"))


def test_a_stopped_passthrough_vm_is_not_backed_up_while_another_holds_its_gpu(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    pve = env.pve
    # A second VM with the same GPU runs (say, a Linux desktop sharing the card).
    other = pve.vm(101)
    other.config["hostpci0"] = "0000:01:00.0,pcie=1"
    code = run(["backup", "--json", "--config", str(EXAMPLE), "--guest", "win11-gaming"])
    row = json.loads(capsys.readouterr().out)["guests"][0]
    assert code == 1 and row["result"] == "failed"
    assert row["message"].startswith(
        "not backed up: vzdump starts the stopped VM paused with its passed-through devices, "
        "and running VM 101 holds 01:00"
    )
    assert not [r for r in pve.requests if r[0] == "POST" and r[1].endswith("/vzdump")]
    # Asked anyway, the lab's vzdump fails the way PVE's paused start does.
    from nixmox.adapters.proxmox.client import Proxmox
    from nixmox.adapters.proxmox.settings import connection
    from nixmox.adapters.proxmox.tasks import TaskFailed, task_log, wait
    from nixmox.inventory.load import load_inventory

    api = Proxmox(connection(load_inventory(EXAMPLE).proxmox))
    upid = api.post("/nodes/pve1/vzdump", vmid=102, storage="backups")
    with pytest.raises(TaskFailed):
        wait(api, upid)
    assert any("already in use by VMID '101'" in line for line in task_log(api, upid))
    # Once the other VM lets the card go, the backup runs.
    del other.config["hostpci0"]
    assert run(["backup", "--config", str(EXAMPLE), "--guest", "win11-gaming"]) == 0


def test_the_text_report_does_not_count_a_skipped_guest_as_backed_up(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from nixmox.backup.job import GuestResult
    from nixmox.backup.runs import BackupSummary

    interrupted = "not started: interrupted by SIGINT"
    summary = BackupSummary(
        (
            GuestResult("nixos-vm", 101, "pve1", result="ok"),
            GuestResult("win11-gaming", 102, "pve1", result="skipped", message=interrupted),
        )
    )
    backup_command._print(summary, dry_run=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2:] == [f"win11-gaming: {interrupted}", "1 of 2 guests backed up, 1 skipped"]
