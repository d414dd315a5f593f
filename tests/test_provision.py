"""plan / apply / adopt against the lab: real HTTPS, real API tokens, fakepve's PVE."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import ssl
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from nixmox.adapters.proxmox.client import Proxmox, TlsError
from nixmox.adapters.proxmox.settings import Connection, connection
from nixmox.cli.main import run
from nixmox.core.errors import ProxmoxError
from nixmox.core.progress import Lines
from nixmox.inventory.load import load_inventory
from nixmox.provision.actual import read_state
from nixmox.provision.apply import Applier
from nixmox.provision.diff import make_plan
from tests.clock import FakeClock
from tests.hosts import VARIANTS, HostSpec, write_host
from tests.lab.fixtures import fresh_lab, point_at
from tests.lab.serving import RunningLab

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "homelab.toml"


def plan_json(
    capsys: pytest.CaptureFixture[str], config: Path = EXAMPLE
) -> tuple[int, dict[str, Any]]:
    code = run(["plan", "--json", "--detailed-exitcode", "--config", str(config)])
    return code, json.loads(capsys.readouterr().out)


def guest(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(g for g in report["guests"] if g["name"] == name)


def api_for(lab: RunningLab) -> Proxmox:
    return Proxmox(Connection(lab.url, lab.token_id, lab.token, lab.ca_file))


@pytest.fixture(scope="session")
def host_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pve1's files: a clean Ryzen 5950X + RTX 3060 passthrough host (tests.hosts)."""
    return write_host(tmp_path_factory.mktemp("host"))


def apply_example(capsys: pytest.CaptureFixture[str], config: Path = EXAMPLE) -> int:
    code = run(["apply", "--yes", "--host-root", str(HOST_ROOT[0]), "--config", str(config)])
    capsys.readouterr()
    return code


HOST_ROOT: list[Path] = []


@pytest.fixture(autouse=True)
def _host(host_root: Path) -> None:
    HOST_ROOT[:] = [host_root]


def test_passthrough_fail_refuses_the_windows_vm(
    lab_root_env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = write_host(tmp_path / "nouveau", VARIANTS["gpu-on-nouveau"][0](HostSpec()))
    code = run(["apply", "--yes", "--host-root", str(bad), "--config", str(EXAMPLE)])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED guest win11-gaming" in out and "host-driver" in out
    assert "OK     guest nixos-lxc" in out  # the others go on
    assert 102 not in {g.vmid for g in lab_root_env.pve.vms}


def inventory_with(tmp_path: Path, old: str, new: str) -> Path:
    text = EXAMPLE.read_text()
    assert old in text, old
    path = tmp_path / "nixmox.toml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_plan_apply_plan_converges(
    lab_root_env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = plan_json(capsys)
    assert code == 2 and report["schema_version"] == 1
    assert [g["action"] for g in report["guests"]] == ["create"] * 3
    assert [b["action"] for b in report["bridges"]] == ["create"] * 3
    assert report["unmanaged"] == [
        {"vmid": 9000, "type": "qemu", "name": "nixos-template", "node": "pve1"}
    ]
    # One /cluster/resources, one /access/permissions (what the token may see and may do),
    # the network, /storage, the template files on `local` (for the container to create)
    # and template 9000's settings (the VM to clone: its boot slot and storages, and what the
    # converge after the clone changes): no reads of the declared guests yet.
    assert report["requests"] == 6
    assert apply_example(capsys) == 0
    pve = lab_root_env.pve
    before = len(pve.requests)
    code, report = plan_json(capsys)
    assert code == 0 and report["changes"] is False, report
    # One request per guest: its pending list (current and pending values), no config.
    reads = sorted(r[1] for r in pve.requests[before:] if "/qemu/" in r[1] or "/lxc/" in r[1])
    assert reads == [
        "/api2/json/nodes/pve1/lxc/100/pending",
        "/api2/json/nodes/pve1/qemu/101/pending",
        "/api2/json/nodes/pve1/qemu/102/pending",
    ]
    # The lab now holds what the inventory says.
    lxc = pve.guest(100).config
    assert lxc["ostype"] == "nixos" and lxc["unprivileged"] == 1 and lxc["features"] == "nesting=1"
    win = pve.guest(102).config
    assert win["hostpci0"] == "mapping=rtx3060,pcie=1,x-vga=1" and win["vga"] == "none"
    assert "pre-enrolled-keys=1" in win["efidisk0"] and "version=v2.0" in win["tpmstate0"]
    assert "size=32G" in pve.guest(101).config["scsi0"]  # cloned at 8G, grown
    # Exactly one network reload for the three bridges.
    reloads = [r for r in pve.requests if r[0] == "PUT" and r[1].endswith("/nodes/pve1/network")]
    assert len(reloads) == 1


def test_drift_behind_nixmoxs_back_is_shown_exactly(
    lab_root_env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    assert apply_example(capsys) == 0
    api_for(lab_root_env).put("/nodes/pve1/lxc/100/config", memory=1024)
    code, report = plan_json(capsys)
    assert code == 2
    changes = guest(report, "nixos-lxc")["changes"]
    assert [(c["key"], c["old"], c["new"], c["label"]) for c in changes] == [
        ("memory", "1024", "4096", "live")
    ]
    assert all(guest(report, n)["action"] == "none" for n in ("nixos-vm", "win11-gaming"))
    # Apply reads the config (for its digest) only of the guest it changes, and sends it.
    before = len(lab_root_env.pve.requests)
    assert apply_example(capsys) == 0
    done = lab_root_env.pve.requests[before:]
    config_reads = [r[1] for r in done if r[0] == "GET" and r[1].endswith("/config")]
    assert config_reads == ["/api2/json/nodes/pve1/lxc/100/config"]
    write = next(r for r in done if r[0] == "PUT" and r[1].endswith("/lxc/100/config"))
    assert "digest" in str(write[2])
    assert lab_root_env.pve.guest(100).config["memory"] == 4096


def test_plan_text_lists_changes_then_a_summary(
    lab_root_env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    assert apply_example(capsys) == 0
    api_for(lab_root_env).put("/nodes/pve1/lxc/100/config", memory=1024)
    assert run(["plan", "--config", str(EXAMPLE)]) == 0
    quiet = capsys.readouterr().out
    assert "nixos-lxc" in quiet and "memory: 1024 -> 4096" in quiet
    assert "no changes" not in quiet and "nixos-vm" not in quiet and "vmbr0" not in quiet
    assert quiet.rstrip().endswith("unchanged, not listed (nixmox -v plan lists them).")
    assert run(["-v", "plan", "--config", str(EXAMPLE)]) == 0
    verbose = capsys.readouterr().out
    assert "nixos-vm (qemu 101 on pve1" in verbose and ": no changes" in verbose
    assert "not listed" not in verbose
    assert apply_example(capsys) == 0
    assert run(["plan", "--config", str(EXAMPLE)]) == 0
    # The user's server is not "the lab".
    assert "\nNo changes: Proxmox matches the inventory.\n" in capsys.readouterr().out


def test_running_vm_non_hotplug_change_needs_reboot_and_stays_pending(
    lab_root_env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lab_root_env.pve.add_declared_guests()  # 101 runs
    inv = inventory_with(
        tmp_path,
        'host = "nixos-vm"\n\n[guests.reboot]\npolicy = "allowed"',
        'host = "nixos-vm"\n\n[guests.reboot]\npolicy = "never"',
    )
    inv.write_text(inv.read_text().replace("cores = 4\nmemory = 8192", "cores = 6\nmemory = 8192"))
    code, report = plan_json(capsys, inv)
    [change] = guest(report, "nixos-vm")["changes"]
    assert (change["key"], change["label"]) == ("cores", "needs-reboot")
    code = run(["apply", "--yes", "--host-root", str(HOST_ROOT[0]), "--config", str(inv)])
    out = capsys.readouterr().out
    assert code == 0 and "pending until the next reboot" in out
    status = [r for r in lab_root_env.pve.requests if r[1].endswith("/status/reboot")]
    assert status == []  # policy "never": no reboot
    code, report = plan_json(capsys, inv)
    [change] = guest(report, "nixos-vm")["changes"]
    assert change["label"] == "needs-reboot" and "already pending" in change["note"]


def test_allowed_policy_reboots_for_pending_changes(
    lab_root_env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lab_root_env.pve.add_declared_guests()
    inv = inventory_with(tmp_path, "cores = 4\nmemory = 8192", "cores = 6\nmemory = 8192")
    assert run(["apply", "--yes", "--host-root", str(HOST_ROOT[0]), "--config", str(inv)]) == 0
    assert "rebooted to apply cores" in capsys.readouterr().out
    assert [r for r in lab_root_env.pve.requests if r[1].endswith("/qemu/101/status/reboot")]
    assert plan_json(capsys, inv)[0] == 0


def test_locked_guest_is_waited_for_then_fails_clearly(
    lab_root_env: RunningLab, tmp_path: Path
) -> None:
    lab_root_env.pve.add_declared_guests()
    lab_root_env.pve.snapshot_lock(100, "backup")
    inv_path = inventory_with(tmp_path, "memory = 4096\nswap = 512", "memory = 2048\nswap = 512")
    inv_path.write_text(
        inv_path.read_text().replace("cores = 4\nmemory = 8192", "cores = 4\nmemory = 4096")
    )
    inv = load_inventory(inv_path)
    api = Proxmox(connection(inv.proxmox))
    plan = make_plan(inv, read_state(api, inv))
    clock = FakeClock()
    outcomes = {o.name: o for o in Applier(api, inv, lock_wait=120, clock=clock).apply(plan)}
    assert outcomes["nixos-lxc"].result == "failed"
    assert "locked (backup)" in (outcomes["nixos-lxc"].error or "")
    assert "waited 120 s" in (outcomes["nixos-lxc"].error or "") and clock.monotonic() >= 120
    assert "never removes someone else's lock" in (outcomes["nixos-lxc"].error or "")
    assert lab_root_env.pve.guest(100).config.get("lock") == "backup"  # untouched
    assert outcomes["nixos-vm"].result == "ok"  # the others proceed
    assert lab_root_env.pve.guest(101).config["memory"] in (4096, "4096")


def test_offline_node_is_a_plan_error_and_apply_applies_nothing(
    lab_root_env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pve = lab_root_env.pve
    pve.add_node("pve2")
    pve.add_vm(200, "far", node="pve2")
    pve.set_node_offline("pve2")
    inv = tmp_path / "n.toml"
    inv.write_text(
        EXAMPLE.read_text()
        .split("# ZFS snapshots")[0]
        .rsplit("# ---", 1)[0]
        .replace(
            '[[nodes]]\nname = "pve1"', '[[nodes]]\nname = "pve2"\n\n[[nodes]]\nname = "pve1"', 1
        )
        + '\n[[guests]]\nname = "far"\nvmid = 200\nkind = "vm"\nnode = "pve2"\nmemory = 512\n'
    )
    before = len(pve.requests)
    code = run(["apply", "--yes", "--host-root", str(HOST_ROOT[0]), "--config", str(inv)])
    captured = capsys.readouterr()
    assert code == 1
    assert "! far (qemu 200 on pve2)" in captured.out
    assert "node pve2 is not answering" in captured.out
    assert "nothing applied: the plan has 1 error" in captured.err
    # Not the bridges, not the other guests: half an apply is worse than none.
    assert not pve.writes(before)


def test_interrupted_apply_converges_like_an_uninterrupted_one(
    lab_root_env: RunningLab,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A 500 on the clone (after the bridges and the container are done),
    # every retry of it too: the first apply fails halfway.
    lab_root_env.pve.fail(
        "POST", "/nodes/pve1/qemu/9000/clone", 500, "Internal Server Error", times=10
    )
    assert apply_example(capsys) == 1
    assert 101 not in {g.vmid for g in lab_root_env.pve.vms}
    lab_root_env.pve.failures.clear()
    assert apply_example(capsys) == 0
    assert plan_json(capsys)[0] == 0
    interrupted = run_adopt(capsys)
    with fresh_lab(tmp_path) as fresh:
        point_at(fresh, monkeypatch, root=True)
        assert apply_example(capsys) == 0
        uninterrupted = run_adopt(capsys)
    assert interrupted == uninterrupted
    assert 'size = "32G"' in interrupted


def run_adopt(capsys: pytest.CaptureFixture[str]) -> str:
    assert run(["adopt", "100", "101", "102", "--config", str(EXAMPLE)]) == 0
    return capsys.readouterr().out


def test_adopt_round_trips(
    lab_root_env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lab_root_env.pve.add_declared_guests()
    lab_root_env.pve.guest(101).config["startup"] = "2,up=30"  # order 2, the short way
    adopted = run_adopt(capsys)
    assert "startup = {order = 2, up = 30}" in adopted
    inv = tmp_path / "adopted.toml"
    head = EXAMPLE.read_text().split("# Guests.")[0]
    inv.write_text(head.rsplit("# ---", 1)[0] + adopted)
    assert run(["config", "check", "--config", str(inv)]) == 0
    capsys.readouterr()
    _, report = plan_json(capsys, inv)
    assert [g["action"] for g in report["guests"]] == ["none"] * 3, report


def test_adopt_json_gives_the_same_entries(
    lab_env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    import tomllib

    lab_env.pve.add_declared_guests()
    toml = tomllib.loads(run_adopt(capsys))
    # --json before the command, as the global options go, and after it.
    vmids = ["100", "101", "102"]
    for args in (["--json", "adopt", *vmids], ["adopt", *vmids, "--json"]):
        assert run([*args, "--config", str(EXAMPLE)]) == 0
        assert json.loads(capsys.readouterr().out) == {"guests": toml["guests"], "missing": []}
    assert run(["--json", "adopt", "100", "4242", "--config", str(EXAMPLE)]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["missing"] == [4242]
    assert captured.err.strip() == "nixmox: adopt: no guest 4242 on the cluster"


def test_adopt_unknown_vmid_is_one_line(
    lab_root_env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["adopt", "4242", "--config", str(EXAMPLE)]) == 1
    assert capsys.readouterr().err.strip() == "nixmox: adopt: no guest 4242 on the cluster"


def test_disk_shrink_is_refused_at_plan_time(
    lab_root_env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lab_root_env.pve.add_declared_guests()
    inv = inventory_with(tmp_path, 'size = "256G"', 'size = "128G"')
    code, report = plan_json(capsys, inv)
    assert code == 1
    win = guest(report, "win11-gaming")
    assert win["action"] == "error" and "shrinking a disk is refused" in win["error"]


def test_dry_run_lists_calls_and_makes_none(
    lab_root_env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    before = len(lab_root_env.pve.requests)
    assert run(["apply", "--dry-run", "--config", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "POST /nodes/pve1/lxc vmid=100" in out and "PUT /nodes/pve1/network" in out
    assert lab_root_env.pve.writes(before) == []


def test_bridge_reload_reverted_when_the_api_stops_answering(lab_root_env: RunningLab) -> None:
    inv = load_inventory(EXAMPLE)
    api = Proxmox(connection(inv.proxmox))
    plan = make_plan(inv, read_state(api, inv))
    plan = type(plan)(guests=(), bridges=plan.bridges, storages=(), unmanaged=())
    pve = lab_root_env.pve
    # The reload cuts the API off (as a wrong bridge on the management NIC would).
    pve.after_network_reload = lambda: (
        pve.fail("GET", "/nodes/pve1/network", 595, "No route to host", times=1000),
        setattr(pve, "after_network_reload", None),
    )
    clock = FakeClock()
    outcomes = Applier(api, inv, network_confirm=30, clock=clock).apply(plan)
    assert all(o.result == "failed" and "reverted" in (o.error or "") for o in outcomes)
    assert clock.monotonic() >= 30  # gave the API the whole confirm time to answer
    lab_root_env.pve.failures.clear()
    names = {i["iface"] for i in api.get("/nodes/pve1/network")}
    assert not names & {"vmbr0", "vmbr1", "vmbr2"}


# -- TLS and secrets ------------------------------------------------------------


def fingerprint(ca_file: str) -> str:
    der = ssl.PEM_cert_to_DER_cert(Path(ca_file).read_text())
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, 64, 2))


def test_right_pin_works_without_a_ca(lab_root_env: RunningLab) -> None:
    api = Proxmox(
        Connection(
            lab_root_env.url,
            lab_root_env.token_id,
            lab_root_env.token,
            None,
            fingerprint(lab_root_env.ca_file),
        )
    )
    assert api.get("/version")["version"].startswith("9.")


def test_wrong_pin_sends_nothing(lab_root_env: RunningLab) -> None:
    before = len(lab_root_env.pve.requests)
    api = Proxmox(
        Connection(
            lab_root_env.url, lab_root_env.token_id, lab_root_env.token, None, ":".join(["AB"] * 32)
        )
    )
    with pytest.raises(TlsError, match="nothing was sent"):
        api.get("/version")
    assert len(lab_root_env.pve.requests) == before


def test_no_ca_and_no_pin_uses_the_system_store(lab_root_env: RunningLab) -> None:
    api = Proxmox(Connection(lab_root_env.url, lab_root_env.token_id, lab_root_env.token))
    with pytest.raises(TlsError, match="system trust store"):
        api.get("/version")


def test_world_readable_token_file_is_refused(
    lab_root_env: RunningLab,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("NIXMOX_PVE_USER")
    monkeypatch.setenv("NIXMOX_PVE_TOKEN_ID", lab_root_env.token_id)
    token = tmp_path / "token"
    token.write_text(lab_root_env.token)
    token.chmod(0o644)
    inv = inventory_with(
        tmp_path, 'token_file = "/etc/nixmox/pve-token"', f'token_file = "{token}"'
    )
    assert run(["plan", "--config", str(inv)]) == 1
    err = capsys.readouterr().err
    assert f"chmod 600 {token}" in err and lab_root_env.token not in err


def test_nothing_leaks_at_vv(lab_root_env: RunningLab, capfd: pytest.CaptureFixture[str]) -> None:
    run(["-vv", "plan", "--config", str(EXAMPLE)])
    out = capfd.readouterr()
    assert lab_root_env.token not in out.out + out.err


def test_password_login_with_a_pin_and_renewal(lab_root_env: RunningLab) -> None:
    from nixmox.adapters.proxmox import client

    conn = Connection(
        lab_root_env.url, "root@pam", "", None, fingerprint(lab_root_env.ca_file), password="secret"
    )
    api = Proxmox(conn)
    assert api.get("/version")
    auth = api.session.auth
    assert isinstance(auth, client._TicketAuth)
    first = auth.ticket
    auth.born -= auth.RENEW_AFTER + 1  # an hour later
    api.post("/nodes/pve1/qemu/9000/config", description="touched")
    assert auth.ticket != first
    logins = [r for r in lab_root_env.pve.requests if r[1].endswith("/access/ticket")]
    assert len(logins) >= 2  # a renewal (with the ticket, or afresh if refused)


# -- retries and tasks -------------------------------------------------------------


def test_reads_are_retried_on_5xx(lab_root_env: RunningLab) -> None:
    api = api_for(lab_root_env)
    lab_root_env.pve.fail("GET", "/version", 596, "broken pipe", times=2)
    assert api.get("/version")
    assert api.calls == 3


def test_a_write_is_not_repeated_when_the_reread_shows_it_done(lab_root_env: RunningLab) -> None:
    api = api_for(lab_root_env)
    lab_root_env.pve.fail(
        "PUT",
        "/nodes/pve1/qemu/9000/config",
        500,
        "can't lock file '/var/lock/qemu-server/lock-9000.conf' - got timeout",
        times=1,
    )
    checks: list[bool] = []

    def done() -> bool:
        checks.append(True)
        return True

    assert api.put("/nodes/pve1/qemu/9000/config", done=done, description="x") is None
    assert checks == [True]


def test_failed_task_raises_with_its_log(lab_root_env: RunningLab) -> None:
    from nixmox.adapters.proxmox.tasks import TaskFailed, wait

    lab_root_env.pve.add_declared_guests()
    api = api_for(lab_root_env)
    lab_root_env.pve.fail("POST", "/nodes/pve1/qemu/102/status/start", error="qemu_exited_code")
    upid = api.post("/nodes/pve1/qemu/102/status/start")
    with pytest.raises(TaskFailed, match="start win11 failed: QEMU exited with code 1"):
        wait(api, upid, what="start win11")


@pytest.mark.parametrize(
    ("exitstatus", "ok", "warnings"),
    [("OK", True, 0), ("WARNINGS: 3", True, 3), ("job errors", False, 0)],
)
def test_task_exit_status_is_read_like_proxmox(exitstatus: str, ok: bool, warnings: int) -> None:
    from nixmox.adapters.proxmox.tasks import TaskResult, warnings_of

    assert TaskResult("UPID:pve1:x", "pve1", exitstatus, warnings_of(exitstatus)).ok is ok
    assert warnings_of(exitstatus) == warnings


# -- privileges ------------------------------------------------------------------------


def test_missing_privileges_are_named(
    lab_root_env: RunningLab, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pve = lab_root_env.pve
    pve.apitokens["nixmox@pve!limited"] = "limited-secret-1234"
    # A privilege-separated token holds what both it and its user are granted.
    for who in ("nixmox@pve", "nixmox@pve!limited"):
        pve.grant(who, "/", "VM.Audit", "Sys.Audit", "Datastore.Audit")
    monkeypatch.delenv("NIXMOX_PVE_USER")
    monkeypatch.setenv("NIXMOX_PVE_TOKEN_ID", "nixmox@pve!limited")
    monkeypatch.setenv("NIXMOX_PVE_TOKEN", "limited-secret-1234")
    assert run(["plan", "--config", str(EXAMPLE)]) == 1
    out = capsys.readouterr().out
    assert "missing privilege: VM.Allocate on /vms/100 (create nixos-lxc)" in out
    assert "missing privilege: Sys.Modify on /nodes/pve1 (bridge vmbr0)" in out
    # The example passes its devices through resource mappings: Mapping.Use, not root.
    assert "missing privilege: Mapping.Use on /mapping/pci/rtx3060" in out
    assert "raw PCI address" not in out
    assert "create win11-gaming: affinity is not in any privilege set" in out
    assert run(["apply", "--yes", "--config", str(EXAMPLE)]) == 1
    assert "nothing applied" in capsys.readouterr().err


def test_a_config_write_that_took_effect_is_not_repeated(
    lab_root_env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lab_root_env.pve.add_declared_guests()
    inv = inventory_with(tmp_path, "memory = 4096\nswap = 512", "memory = 2048\nswap = 512")
    # The lock times out after PVE wrote the change: a blind retry would write twice.
    lab_root_env.pve.fail(
        "PUT",
        "/nodes/pve1/lxc/100/config",
        500,
        "can't lock file '/var/lock/lxc/pve-config-100.lock' - got timeout",
        times=1,
    )
    assert run(["apply", "--yes", "--host-root", str(HOST_ROOT[0]), "--config", str(inv)]) in (0, 1)
    capsys.readouterr()
    puts = [
        r for r in lab_root_env.pve.requests if r[0] == "PUT" and r[1].endswith("/lxc/100/config")
    ]
    # The failed attempt, then, re-read and still not done (the fault answered before
    # writing), exactly one more: never a loop of blind repeats.
    assert len(puts) == 2
    assert plan_json(capsys, inv)[0] == 0


def test_plan_refuses_a_clone_to_another_node_from_local_storage(
    lab_root_env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The template 9000 lives on pve1 with its disk on vm-disks (local ZFS): PVE cannot
    # clone it to pve2, so plan says so rather than apply failing half-way.
    lab_root_env.pve.add_node("pve2")
    data = tomllib.loads(EXAMPLE.read_text())
    data["nodes"].append({"name": "pve2"})
    data["guests"] = [g for g in data["guests"] if g["name"] == "nixos-vm"]
    data["guests"][0]["node"] = "pve2"
    data.pop("backups", None)
    inv = tmp_path / "n.toml"
    inv.write_text(tomlkit.dumps(data))
    code = run(["plan", "--json", "--config", str(inv)])
    [row] = json.loads(capsys.readouterr().out)["guests"]
    assert code != 0 and row["action"] == "error"
    assert "PVE cannot clone it to pve2" in row["error"] and "vm-disks" in row["error"]
    # apply refuses it too and creates nothing on pve2.
    code = run(["apply", "--yes", "--host-root", str(HOST_ROOT[0]), "--config", str(inv)])
    capsys.readouterr()
    assert code != 0 and lab_root_env.pve.guest(101) is None


# -- progress ---------------------------------------------------------------------


def test_apply_progress_tells_each_object_and_task_waits(lab_root_env: RunningLab) -> None:
    inv = load_inventory(EXAMPLE)
    api = Proxmox(connection(inv.proxmox))
    plan = make_plan(inv, read_state(api, inv))

    class Pacing(FakeClock):
        # The lab's task runs in real time: each poll lets a little real time pass,
        # so the task's 1 s is never outrun by the fake clock's hour-long timeout.
        def sleep(self, seconds: float) -> None:
            super().sleep(seconds)
            time.sleep(0.01)

    clock, out = Pacing(), io.StringIO()
    applier = Applier(api, inv, clock=clock, progress=Lines(out, clock))
    nets = applier.apply(type(plan)(guests=(), bridges=plan.bridges, storages=(), unmanaged=()))
    lab_root_env.pve.time_scale = 1.0
    lab_root_env.pve.ct_secs["create"] = 1  # the container's create task runs a while
    only = tuple(g for g in plan.guests if g.name == "nixos-lxc")
    outcomes = nets + applier.apply(type(plan)(guests=only, bridges=(), storages=(), unmanaged=()))
    assert all(o.result == "ok" for o in outcomes), [o.error for o in outcomes]
    said = [re.sub(r"^\S+ \S+ ", "", line) for line in out.getvalue().splitlines()]
    assert said[0] == "changing the network of pve1 (vmbr0, vmbr1, vmbr2)"
    assert any(s.startswith("network of pve1: reloaded; waiting up to 30 s") for s in said)
    assert said.index("creating nixos-lxc") > 0
    # Terraform's floor: a task that gives no news is still said to run, with its time.
    assert any(re.fullmatch(r"Still creating nixos-lxc\.\.\. \[\d+s elapsed\]", s) for s in said)
    assert said[-1].startswith("nixos-lxc: ok (created from ")


def test_apply_progress_is_plain_lines_on_stderr_and_json_stays_clean(
    lab_root_env: RunningLab, tmp_path: Path
) -> None:
    env = {**os.environ, "NIXMOX_STATE_DIR": str(tmp_path / "state")}  # the root login
    env["PYTHONPATH"] = str(ROOT / "src")
    command = [sys.executable, "-m", "nixmox.cli.main", "apply", "--yes", "--json"]
    command += ["--host-root", str(HOST_ROOT[0]), "--config", str(EXAMPLE)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["applied"]  # stdout: only the JSON
    lines = done.stderr.splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", line) for line in lines), lines
    assert any(line.endswith(" creating nixos-vm") for line in lines)
    assert any(re.search(r" nixos-vm: ok \(full clone of 9000", line) for line in lines), "\n".join(
        lines
    )


def test_startup_order_is_declared_applied_live_and_needs_sys_modify_for_a_vm(
    lab_root_env: RunningLab,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    assert apply_example(capsys) == 0
    config = inventory_with(
        tmp_path,
        'tags = ["nixos"]\nonboot = true\n',
        ('tags = ["nixos"]\nonboot = true\nstartup = { order = 2, up = 30 }\n'),
    )
    config.write_text(
        config.read_text().replace(
            'tags = ["nixos", "services"]\nonboot = true\n',
            'tags = ["nixos", "services"]\nonboot = true\nstartup = { order = 1 }\n',
            1,
        )
    )
    pve = lab_root_env.pve
    pve.guest(101).config["startup"] = "up=30,order=2"  # the same, written the other way
    code, report = plan_json(capsys, config)
    assert code == 2
    changes = guest(report, "nixos-lxc")["changes"]
    assert [(c["key"], c["new"], c["label"]) for c in changes] == [("startup", "order=1", "live")]
    assert guest(report, "nixos-vm")["action"] == "none"  # key order is not drift
    # A VM's startup changes how the host boots: qemu-server wants Sys.Modify on /.
    pve.guest(101).config.pop("startup")
    token = "nixmox@pve!order"
    pve.apitokens[token] = "order-secret-1234"
    for who in ("nixmox@pve", token):
        pve.grant(who, "/", "VM.Audit", "Sys.Audit", "Datastore.Audit", "VM.Config.Options")
    monkeypatch.delenv("NIXMOX_PVE_USER")
    monkeypatch.setenv("NIXMOX_PVE_TOKEN_ID", token)
    monkeypatch.setenv("NIXMOX_PVE_TOKEN", "order-secret-1234")
    writes = len([r for r in pve.requests if r[0] != "GET"])
    assert run(["apply", "--yes", "--config", str(config)]) == 1
    err = capsys.readouterr()
    assert "missing privilege: Sys.Modify on / (change nixos-vm: startup)" in err.err
    assert len([r for r in pve.requests if r[0] != "GET"]) == writes
    for who in ("nixmox@pve", token):
        pve.grant(who, "/", "Sys.Modify")
    assert run(["apply", "--yes", "--config", str(config)]) == 0, capsys.readouterr()
    capsys.readouterr()
    assert pve.guest(100).config["startup"] == "order=1"
    assert pve.guest(101).config["startup"] == "order=2,up=30"
    code, report = plan_json(capsys, config)
    assert code == 0 and report["changes"] is False, report


def test_the_lab_refuses_a_vm_startup_without_sys_modify_as_qemu_server_does(
    lab_root_env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    assert apply_example(capsys) == 0
    pve = lab_root_env.pve
    token = "nixmox@pve!plain"
    pve.apitokens[token] = "plain-secret-1234"
    for who in ("nixmox@pve", token):
        pve.grant(who, "/", "VM.Audit", "VM.Config.Options")
    api = Proxmox(Connection(lab_root_env.url, token, "plain-secret-1234", lab_root_env.ca_file))
    api.put("/nodes/pve1/qemu/101/config", description="fine without it")
    with pytest.raises(ProxmoxError, match=r"Sys\.Modify"):
        api.put("/nodes/pve1/qemu/101/config", startup="order=1")
    api.put("/nodes/pve1/lxc/100/config", startup="order=1")  # a container's needs no more
    assert pve.guest(100).config["startup"] == "order=1"
