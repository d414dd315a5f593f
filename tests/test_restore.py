"""`nixmox restore` and `nixmox rebuild` against the lab: its vzdump archives remember
each guest's config, so a restore there brings the guest back as it was backed up."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fakepve import FakeVm

from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.settings import Connection
from nixmox.adapters.proxmox.tasks import wait
from nixmox.backup.archives import Archive
from nixmox.backup.copies import copy_changes, memory_problem
from nixmox.cli.main import run
from nixmox.core.errors import UsageError
from nixmox.inventory.model import Guest, Startup
from nixmox.restore.choose import Candidate, choose, parse_at
from nixmox.restore.rebuild import startup_order
from tests.hosts import write_host
from tests.lab.serving import RunningLab

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "homelab.toml"
VIENNA = ZoneInfo("Europe/Vienna")


@pytest.fixture(scope="module")
def host_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pve1's files: a clean passthrough host, so apply may create the Windows VM."""
    return write_host(tmp_path_factory.mktemp("host"))


@pytest.fixture
def built(
    lab_root_env: RunningLab, host_root: Path, capsys: pytest.CaptureFixture[str]
) -> RunningLab:
    """The example applied to the lab and the guests declared to run started: the
    server as it runs every day. nixmox logs in as root@pam: the Windows VM's raw
    hostpci and affinity are root's alone, to set and to restore (PVE's rule)."""
    code = run(["apply", "--yes", "--host-root", str(host_root), "--config", str(EXAMPLE)])
    out = capsys.readouterr()
    assert code == 0, out
    api = api_for(lab_root_env)
    wait(api, api.post("/nodes/pve1/lxc/100/status/start"))
    wait(api, api.post("/nodes/pve1/qemu/101/status/start"))
    return lab_root_env


def api_for(lab: RunningLab) -> Proxmox:
    return Proxmox(Connection(lab.url, lab.token_id, lab.token, lab.ca_file))


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = run([*args, "--json", "--config", str(EXAMPLE)])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def back_up(capsys: pytest.CaptureFixture[str], *guests: str) -> None:
    args = [a for g in guests for a in ("--guest", g)]
    assert run(["backup", "--config", str(EXAMPLE), *args]) == 0
    capsys.readouterr()


def destroy(lab: RunningLab, vmid: int) -> None:
    """Destroy a guest through the API, as a dead disk or a wrong click would."""
    api = api_for(lab)
    guest = lab.pve.guest(vmid)
    kind = "qemu" if isinstance(guest, FakeVm) else "lxc"
    path = f"/nodes/pve1/{kind}/{vmid}"
    if guest.status == "running":
        wait(api, api.post(f"{path}/status/stop"))
    upid = api.delete(path, purge=1, **{"destroy-unreferenced-disks": 1})
    if isinstance(upid, str):
        wait(api, upid)
    assert lab.pve.guest(vmid) is None


def restores(lab: RunningLab) -> list[int]:
    """The VMIDs restored so far, in order (the lab's restore tasks)."""
    posts = [
        r
        for r in lab.pve.requests
        if r[0] == "POST"
        and (r[1].endswith("/nodes/pve1/qemu") or r[1].endswith("/nodes/pve1/lxc"))
        and (b"archive=" in r[2] or b"restore=1" in r[2])
    ]
    found = []
    for r in posts:
        fields = dict(p.split(b"=", 1) for p in r[2].split(b"&") if b"=" in p)
        found.append(int(fields[b"vmid"]))
    return found


# -- pure ------------------------------------------------------------------------


def archive(when: datetime, vmid: int = 101) -> Candidate:
    stamp = when.astimezone(VIENNA).strftime("%Y_%m_%d-%H_%M_%S")
    volid = f"backups:backup/vzdump-qemu-{vmid}-{stamp}.vma.zst"
    return Candidate(Archive(volid, "qemu", vmid, when, 1, False))


def test_at_picks_across_the_autumn_dst_change() -> None:
    # 2026-10-25 in Vienna: 02:00-03:00 happens twice (CEST, then CET).
    first = datetime(2026, 10, 25, 2, 30, tzinfo=VIENNA)  # fold=0: 00:30 UTC
    second = datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=VIENNA)  # 01:30 UTC
    assert second.astimezone(UTC) - first.astimezone(UTC) == timedelta(hours=1)
    found = [archive(second), archive(first), archive(first - timedelta(days=1))]
    # A wall-clock time of the doubled hour is its first reading (before the change).
    assert choose(found, at=parse_at("2026-10-25 02:45", VIENNA)) == found[1]
    assert choose(found, at=parse_at("2026-10-25T02:45+01:00", VIENNA)) == found[0]
    assert choose(found, at=parse_at("2026-10-25 02:29", VIENNA)) == found[2]
    assert choose(found, at=parse_at("2026-10-24", VIENNA)) is None


def test_at_refuses_a_time_the_spring_change_skipped() -> None:
    with pytest.raises(UsageError, match="does not exist"):
        parse_at("2026-03-29 02:30", VIENNA)
    with pytest.raises(UsageError, match="not a time"):
        parse_at("last tuesday", VIENNA)


def test_a_copy_loses_what_the_original_owns() -> None:
    config = {
        "hostpci0": "0000:01:00,pcie=1,x-vga=1",
        "hostpci1": "0000:03:00.0,pcie=1",
        "usb0": "host=1-2",
        "onboot": 1,
        "startup": "order=1",
        "hookscript": "local:snippets/hook.pl",
        "net0": "virtio=BC:24:11:00:00:66,bridge=vmbr1",
        "net1": "virtio=BC:24:11:01:00:66,bridge=vmbr0,link_down=1",
        "memory": 16384,
    }
    changes = copy_changes(config)
    assert changes.removed == ["hookscript", "hostpci0", "hostpci1", "onboot", "startup", "usb0"]
    assert changes.params["net0"].endswith(",link_down=1") and "net1" not in changes.params
    status = {"memory": {"available": 8 * 1024**3}}
    assert "needs 16384 MiB" in str(memory_problem(16 * 1024**3, status, "pve1"))
    assert memory_problem(4 * 1024**3, status, "pve1") is None


# -- restore -------------------------------------------------------------------------


def test_restore_in_place_keeps_what_was_there_and_that_can_be_restored_back(
    built: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    pve = built.pve
    back_up(capsys, "nixos-vm")
    vm = pve.guest(101)
    vm.config["serial1"] = "socket"  # a change made after the backup
    code, report = cli(capsys, "restore", "nixos-vm", "--yes")
    assert code == 0, report
    r = report["restore"]
    assert [s["step"] for s in r["steps"]] == [
        "stop",
        "keep",
        "restore",
        "converge",
        "start",
        "wait",
    ]
    assert r["health"] == "running" and pve.guest(101).status == "running"
    assert "serial1" not in pve.guest(101).config  # back as it was backed up
    kept = r["kept"]
    record = pve.backups("backups")[kept.split(":", 1)[1]]
    assert record["protected"] and record["config"]["serial1"] == "socket"
    # The kept copy is a restorable archive: the restore itself can be undone.
    code, report = cli(capsys, "restore", "nixos-vm", "--archive", kept, "--yes")
    assert code == 0, report
    assert pve.guest(101).config["serial1"] == "socket"
    # The journal has both runs with their typed summaries.
    code = run(["history", "--job", "restore", "--json"])
    runs = json.loads(capsys.readouterr().out)
    assert code == 0 and [r["result"] for r in runs] == ["ok", "ok"]


def test_restore_of_a_destroyed_guest_brings_it_back(
    built: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    back_up(capsys, "nixos-lxc")
    before = dict(built.pve.guest(100).config)
    destroy(built, 100)
    # Nothing to replace: no question.
    code = run(["restore", "nixos-lxc", "--json", "--config", str(EXAMPLE)])
    shown = capsys.readouterr()
    report = json.loads(shown.out)  # progress is on stderr only: stdout stays JSON
    assert code == 0, report
    # Each step's start and end, as plain timestamped lines off a terminal.
    told = [line.split(" ", 2)[2] for line in shown.err.splitlines()]
    assert [t for t in told if t.startswith("nixos-lxc: ")][:2] == [
        "nixos-lxc: restore",
        next(t for t in told if t.startswith("nixos-lxc: restore ok (")),
    ]
    assert any(t.startswith("nixos-lxc: wait ok (") for t in told), told
    assert [s["step"] for s in report["restore"]["steps"]] == [
        "restore",
        "converge",
        "start",
        "wait",
    ]
    after = built.pve.guest(100).config
    for key in ("hostname", "cores", "memory", "features", "unprivileged", "net0", "onboot"):
        assert after[key] == before[key], key
    code, plan = cli(capsys, "plan")
    assert code == 0 and plan["changes"] is False


def test_restore_as_new_copy_takes_nothing_the_original_owns(
    built: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    back_up(capsys, "win11-gaming", "nixos-vm")
    original = dict(built.pve.guest(102).config)
    code, report = cli(capsys, "restore", "win11-gaming", "--as", "9102")
    assert code == 0, report
    r = report["restore"]
    assert r["mode"] == "as new" and r["removed"] == ["hostpci0", "hostpci1", "onboot"]
    copy = built.pve.guest(9102).config
    assert not any(k.startswith(("hostpci", "usb")) for k in copy) and "onboot" not in copy
    assert "link_down=1" in copy["net0"] and copy["net0"] != original["net0"]  # new MAC
    assert built.pve.guest(9102).status == "stopped"  # the original is not declared to run
    assert built.pve.guest(102).config == original  # the original untouched
    # A copy of a guest declared to run is started, isolated first.
    code, report = cli(capsys, "restore", "nixos-vm", "--as", "9101")
    assert code == 0, report
    assert built.pve.guest(9101).status == "running"
    assert "link_down=1" in built.pve.guest(9101).config["net0"]
    # A VMID in use is refused before anything happens.
    code = run(["restore", "nixos-vm", "--as", "9101", "--config", str(EXAMPLE)])
    assert code == 1 and "VMID 9101 is taken" in capsys.readouterr().err


def test_a_locked_guest_is_refused(built: RunningLab, capsys: pytest.CaptureFixture[str]) -> None:
    back_up(capsys, "nixos-vm")
    built.pve.snapshot_lock(101, "backup")
    before = len(restores(built))
    code = run(["restore", "nixos-vm", "--yes", "--config", str(EXAMPLE)])
    err = capsys.readouterr().err
    assert code == 1 and "is locked (backup)" in err
    assert len(restores(built)) == before and built.pve.guest(101).status == "running"


def test_in_place_without_yes_and_without_a_terminal_is_refused(
    built: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    back_up(capsys, "nixos-vm")
    code = run(["restore", "nixos-vm", "--config", str(EXAMPLE)])
    assert code == 1 and "without --yes" in capsys.readouterr().err
    assert built.pve.guest(101).status == "running"


def test_list_and_dry_run_change_nothing(
    built: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    back_up(capsys, "nixos-vm")
    back_up(capsys, "nixos-vm")
    assert run(["backup", "verify", "--guest", "nixos-vm", "--config", str(EXAMPLE)]) == 0
    capsys.readouterr()
    code, listing = cli(capsys, "restore", "nixos-vm", "--list")
    rows = listing["archives"]
    assert code == 0 and len(rows) == 2 and rows[0]["chosen"]
    assert rows[0]["verified"]["ok"] is True and rows[1]["verified"] is None
    before = len(built.pve.requests)
    code, report = cli(capsys, "restore", "nixos-vm", "--dry-run")
    assert code == 0 and report["dry_run"]
    calls = report["restore"]["steps"]
    assert [s["step"] for s in calls][:3] == ["stop", "keep", "restore"]
    writes = [
        r for r in built.pve.requests[before:] if r[0] != "GET" and "/access/ticket" not in r[1]
    ]
    assert writes == []
    code = run(["restore", "nixos-vm", "--dry-run", "--config", str(EXAMPLE)])
    out = capsys.readouterr().out
    assert "POST /nodes/pve1/qemu vmid=101 archive=backups:backup/vzdump-qemu-101-" in out
    assert "force=1" in out
    assert "POST /nodes/pve1/vzdump" in out and "protected=1" in out


def test_verify_starts_the_windows_copy_without_its_devices(
    built: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    back_up(capsys, "win11-gaming")
    pve = built.pve
    seen: dict[int, dict[str, Any]] = {}
    start = pve._do_start

    async def record(vm: FakeVm, user: str, p: dict[str, Any]) -> str:
        seen[vm.vmid] = dict(vm.config)
        return await start(vm, user, p)

    pve._do_start = record  # type: ignore[method-assign]
    code = run(["backup", "verify", "--guest", "win11-gaming", "--json", "--config", str(EXAMPLE)])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    scratch = seen[9900]  # the scratch copy's config at the moment it was started
    assert not any(k.startswith(("hostpci", "usb")) for k in scratch)
    assert "onboot" not in scratch and "hookscript" not in scratch
    assert all("link_down=1" in v for k, v in scratch.items() if k.startswith("net"))
    row = report["guests"][0]
    assert row["removed"] == ["hostpci0", "hostpci1", "onboot"]
    assert "removed from the copy: hostpci0, hostpci1, onboot" in row["message"]
    assert row["restore_seconds"] >= 0 and row["boot_seconds"] >= 0


def test_verify_refuses_to_start_a_copy_the_node_cannot_hold(
    built: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    back_up(capsys, "win11-gaming")
    built.pve.hardware["memory_gib"] = 16  # 14 GiB available, the copy needs 16
    code = run(["backup", "verify", "--guest", "win11-gaming", "--json", "--config", str(EXAMPLE)])
    row = json.loads(capsys.readouterr().out)["guests"][0]
    assert code == 1 and "the copy needs 16384 MiB" in row["message"] and row["cleaned"]
    assert not [r for r in built.pve.requests if r[1].endswith("/9900/status/start")]


# -- rebuild -------------------------------------------------------------------------


@pytest.fixture
def lost(built: RunningLab, capsys: pytest.CaptureFixture[str]) -> Iterator[dict[int, float]]:
    """Every guest backed up (at different times), then every guest destroyed.
    Yields each VMID's archive time (epoch)."""
    pve = built.pve
    now = datetime.now(UTC).timestamp()
    made = {}
    for vmid, hours in ((100, 30), (101, 5), (102, 50)):
        pve.now = lambda h=hours: now - h * 3600  # type: ignore[misc]
        name = {100: "nixos-lxc", 101: "nixos-vm", 102: "win11-gaming"}[vmid]
        back_up(capsys, name)
        made[vmid] = now - hours * 3600
    for vmid in made:
        destroy(built, vmid)
    yield made


def test_rebuild_brings_every_guest_back_in_startup_order(
    built: RunningLab, lost: dict[int, float], capsys: pytest.CaptureFixture[str]
) -> None:
    pve = built.pve
    pve.host_events.clear()
    code = run(["rebuild", "--json", "--config", str(EXAMPLE)])
    shown = capsys.readouterr()
    report = json.loads(shown.out)
    assert code == 0, report
    # Each guest's start and end, and its steps in between, on stderr.
    assert "restore nixos-vm (101)\n" in shown.err and "nixos-vm: restore ok (" in shown.err
    assert "nixos-vm: ok: " in shown.err, shown.err
    assert report["plan_empty"] is True
    rows = {g["guest"]: g for g in report["guests"]}
    assert [g["vmid"] for g in report["guests"]] == [100, 101, 102]
    assert restores(built)[-3:] == [100, 101, 102]
    started = [e[1] for e in pve.host_events if e[0] == "start"]
    assert started == [100, 101]  # 102 is not declared to run
    for vmid, when in lost.items():
        row = next(g for g in report["guests"] if g["vmid"] == vmid)
        assert row["action"] == "restore"
        expected = datetime.now(UTC).timestamp() - when
        assert abs(row["data_age_seconds"] - expected) < 60, row
    assert rows["win11-gaming"]["result"]["health"] == "stopped (not declared to run)"
    assert rows["nixos-vm"]["result"]["health"] == "running"
    assert pve.guest(102).config["hostpci0"] == "mapping=rtx3060,pcie=1,x-vga=1"  # its own
    # A second rebuild has nothing to do.
    before = len(restores(built))
    code, report = cli(capsys, "rebuild")
    assert code == 0 and {g["action"] for g in report["guests"]} == {"leave"}
    assert len(restores(built)) == before


def test_rebuild_interrupted_half_way_is_finished_by_the_next_run(
    built: RunningLab, lost: dict[int, float], capsys: pytest.CaptureFixture[str]
) -> None:
    pve = built.pve
    restore_vm = pve._qm_restore

    async def then_interrupt(v: dict[str, Any], user: str) -> str:
        upid = await restore_vm(v, user)
        if int(v["vmid"]) == 101:
            os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C during nixos-vm
        return upid

    pve._qm_restore = then_interrupt  # type: ignore[method-assign]
    code, report = cli(capsys, "rebuild")
    assert code == 130
    rows = {g["guest"]: g["result"] for g in report["guests"]}
    assert rows["nixos-lxc"]["ok"] and not rows["nixos-vm"]["ok"]
    assert "not started" in rows["win11-gaming"]["message"]
    assert pve.guest(102) is None
    pve._qm_restore = restore_vm  # type: ignore[method-assign]
    code, report = cli(capsys, "rebuild")
    assert code == 0, report
    actions = {g["guest"]: g["action"] for g in report["guests"]}
    assert actions == {"nixos-lxc": "done", "nixos-vm": "resume", "win11-gaming": "restore"}
    assert sorted(restores(built)[-3:]) == [100, 101, 102]  # each restored exactly once
    assert report["plan_empty"] is True and pve.guest(101).status == "running"


def test_rebuild_creates_a_guest_without_archive_from_its_template_and_says_so(
    built: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    back_up(capsys, "nixos-lxc")
    destroy(built, 100)
    destroy(built, 101)  # never backed up
    code = run(["rebuild", "--config", str(EXAMPLE)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "WARNING: no archive of nixos-vm: created empty from the template" in out
    code, report = cli(capsys, "plan")
    assert code == 0 and report["changes"] is False
    clones = [r for r in built.pve.requests if r[1].endswith("/qemu/9000/clone")]
    assert clones  # nixos-vm came from its template
    assert restores(built)[-1] == 100


def test_verify_never_starts_a_copy_whose_devices_it_could_not_take_away(
    lab_env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # With an API token PVE refuses to remove a raw (unmapped) hostpci device: the copy
    # stays stopped, the run says why, and the scratch guest is removed all the same.
    raw = tmp_path / "raw-hostpci.toml"
    raw.write_text(
        EXAMPLE.read_text()
        .replace('mapping = "rtx3060"\ndevice = "0000:01:00"', 'device = "0000:01:00"')
        .replace('mapping = "usb-card"\ndevice = "0000:03:00.0"', 'device = "0000:03:00.0"')
    )
    lab_env.pve.add_declared_guests()
    lab_env.pve.find("pve1", 102).config["hostpci0"] = "0000:01:00,pcie=1,x-vga=1"
    lab_env.pve.find("pve1", 102).config["hostpci1"] = "0000:03:00.0,pcie=1"
    back_up(capsys, "win11-gaming")
    code = run(["backup", "verify", "--guest", "win11-gaming", "--json", "--config", str(raw)])
    row = json.loads(capsys.readouterr().out)["guests"][0]
    assert code == 1 and row["cleaned"], row
    assert "cannot remove hostpci0, hostpci1, onboot from the copy" in row["message"]
    assert not [r for r in lab_env.pve.requests if r[1].endswith("/9900/status/start")]
    assert 9900 not in {g.vmid for g in lab_env.pve.vms}


def test_a_long_restore_says_it_is_still_running(
    built: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    back_up(capsys, "nixos-vm")
    destroy(built, 101)
    built.pve.restore_wall_secs = 13.0  # a task with no news for well over 10 s
    code = run(["restore", "nixos-vm", "--json", "--config", str(EXAMPLE)])
    shown = capsys.readouterr()
    assert code == 0, shown.err
    told = [line.split(" ", 2)[2] for line in shown.err.splitlines()]
    still = [t for t in told if t.startswith("Still nixos-vm: restore... [")]
    assert still and still[0].endswith("s elapsed]"), shown.err


def test_startup_order_is_proxmoxs_boot_order() -> None:
    def g(vmid: int, onboot: bool | None, order: int | None = None) -> Guest:
        startup = None if order is None else Startup(order=order)
        return Guest(
            name=f"g{vmid}", vmid=vmid, kind="lxc", node="pve1", onboot=onboot, startup=startup
        )

    guests = [g(100, True), g(101, True, 2), g(102, None, 0), g(103, True, 1), g(104, True, 2)]
    guests += [g(105, False), g(99_000, True)]
    # Declared to run first, by order (none = after every order), then VMID; the rest last.
    assert [x.vmid for x in startup_order(guests)] == [103, 101, 104, 100, 99_000, 102, 105]
