"""`nixmox doctor` against the lab (fakepve seeded with the example's hardware)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nixmox.adapters.proxmox.permissions import role_name
from nixmox.cli.main import run
from nixmox.core.verdict import Check, Status, exit_code, totals
from tests.lab.serving import RunningLab

EXAMPLE = str(Path(__file__).resolve().parent.parent / "examples" / "homelab.toml")


def doctor_json(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, object]]:
    code = run(["doctor", "--config", EXAMPLE, "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def by_id(report: dict[str, object], check_id: str) -> list[dict[str, str]]:
    checks = report["checks"]
    assert isinstance(checks, list)
    return [c for c in checks if c["id"] == check_id]


def test_blank_lab_reachable_but_guests_missing(
    lab_env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = doctor_json(capsys, "--only", "proxmox", "--only", "guests")
    reach = by_id(report, "proxmox-reachable")
    assert reach[0]["status"] == "PASS" and "TLS verified" in reach[0]["message"]
    missing = by_id(report, "guest-exists")
    assert [c["status"] for c in missing] == ["WARN"] * 3
    assert all(c["fix"] for c in missing)
    # Creating the Windows VM sets affinity: root@pam's login only (its devices go through
    # resource mappings), and
    # the lab's API token (root@pam's own) is no root for those checks.
    root = [c for c in by_id(report, "token-privileges") if c["status"] == "FAIL"]
    assert root and all("never an API token" in c["message"] for c in root)
    assert code == 2


def test_declared_guests_pass(lab_env: RunningLab, capsys: pytest.CaptureFixture[str]) -> None:
    lab_env.pve.add_declared_guests()
    code, report = doctor_json(capsys, "--only", "guests", "--only", "proxmox")
    assert [c["status"] for c in by_id(report, "guest-exists")] == ["PASS"] * 3
    assert by_id(report, "token-privileges")[0]["status"] == "PASS"
    assert code == 0
    # Reachable, 3 guests exist, 3 without pending changes, the running VM's agent
    # answers; the stopped Windows VM's agent is not asked (INFO).
    assert report["summary"] == {  # type: ignore[comparison-overlap]
        "PASS": 9,
        "INFO": 1,
        "WARN": 0,
        "FAIL": 0,
        "UNKNOWN": 0,
        "exit_code": 0,
        "areas": ["proxmox", "guests"],
    }


def test_locked_guest_warns(lab_env: RunningLab, capsys: pytest.CaptureFixture[str]) -> None:
    lab_env.pve.add_declared_guests()
    lab_env.pve.snapshot_lock(101, "backup")
    code, report = doctor_json(capsys, "--only", "guests")
    assert by_id(report, "guest-lock")[0]["subject"] == "nixos-vm (101)"
    assert code == 1


def test_wrong_kind_fails(
    lab_env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lab_env.pve.add_declared_guests()
    inv = tmp_path / "n.toml"
    inv.write_text('[[guests]]\nname = "x"\nvmid = 101\nkind = "lxc"\nnode = "pve1"\n')
    code = run(["doctor", "--config", str(inv), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert by_id(report, "guest-exists")[0]["status"] == "FAIL"
    assert code == 2


def test_untrusted_certificate_fails_and_never_sends_on(
    lab_env: RunningLab,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    # A CA that did not sign the lab's certificate: the system bundle.
    monkeypatch.setenv("NIXMOX_PVE_CA_FILE", "/etc/ssl/certs/ca-certificates.crt")
    code, report = doctor_json(capsys)
    reach = by_id(report, "proxmox-reachable")[0]
    assert reach["status"] == "FAIL" and "is not signed by CA file" in reach["message"]
    assert by_id(report, "guest-exists")[0]["status"] == "UNKNOWN"
    assert code == 2


def test_wrong_token_fails_without_showing_it(
    lab_env: RunningLab, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    secret = "00000000-dead-beef-0000-000000000000"
    monkeypatch.setenv("NIXMOX_PVE_TOKEN", secret)
    code = run(["-vv", "doctor", "--config", EXAMPLE])
    out = capfd.readouterr()
    assert code == 2
    assert "FAIL" in out.out and "401" in out.out
    assert secret not in out.out + out.err


def test_every_area_of_the_contract_can_be_asked_for(
    lab_env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    contract = [
        "passthrough",
        "proxmox",
        "storage",
        "pools",
        "guests",
        "backups",
        "snapshots",
        "replication",
        "host",
    ]
    for asked in (contract, ["proxmox"]):
        _, report = doctor_json(capsys, *[arg for area in asked for arg in ("--only", area)])
        summary = report["summary"]
        assert isinstance(summary, dict) and sorted(summary["areas"]) == sorted(asked)


def test_unknown_area_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["doctor", "--config", EXAMPLE, "--only", "gpu"]) == 1
    err = capsys.readouterr().err
    assert "--only gpu: unknown area" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        ([], 0),
        ([Status.PASS, Status.INFO], 0),
        ([Status.PASS, Status.WARN], 1),
        ([Status.WARN, Status.UNKNOWN], 3),
        ([Status.UNKNOWN, Status.FAIL, Status.WARN], 2),
    ],
)
def test_exit_code_is_nagios_style(statuses: list[Status], code: int) -> None:
    checks = [Check("x", s, "s", "m") for s in statuses]
    assert exit_code(checks) == code
    assert sum(totals(checks).values()) == len(statuses)


def test_missing_token_privileges_fail_with_the_grant_to_make(
    lab_env: RunningLab, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pve = lab_env.pve
    pve.apitokens["nixmox@pve!ro"] = "read-only-secret-1"
    for who in ("nixmox@pve", "nixmox@pve!ro"):  # a privilege-separated token and its user
        pve.grant(who, "/", "VM.Audit", "Sys.Audit", "Datastore.Audit")
    monkeypatch.setenv("NIXMOX_PVE_TOKEN_ID", "nixmox@pve!ro")
    monkeypatch.setenv("NIXMOX_PVE_TOKEN", "read-only-secret-1")
    code, report = doctor_json(capsys, "--only", "proxmox")
    failed = [c for c in by_id(report, "token-privileges") if c["status"] == "FAIL"]
    assert code == 2 and failed
    allocate = next(c for c in failed if "VM.Allocate on /vms/100" in c["message"])
    role = role_name("Nixmox", "/vms/100", ["VM.Allocate"])
    assert f"pveum acl modify /vms/100 --roles {role} --users nixmox@pve " in allocate["fix"]
    assert "--tokens 'nixmox@pve!ro'" in allocate["fix"]
    assert f"pveum role add {role} --privs VM.Allocate" in allocate["fix"]
    root = next(c for c in failed if "affinity" in c["message"])
    assert "root@pam" in root["fix"] and "root@pam's token" not in root["fix"]
    # The example's devices go through resource mappings: Mapping.Use, never root.
    assert any("Mapping.Use on /mapping/pci/rtx3060" in c["message"] for c in failed)
    assert not any("raw PCI address" in c["message"] for c in failed)
