"""Least privilege against the lab, with a privilege-separated token of a non-root user.

For each job: without privileges it is refused before any write, naming them;
with exactly the grant `nixmox token` prints it succeeds without one refusal
and uses every privilege granted; without any one of them it stops at its
preflight, naming that one. The lab holds tokens to PVE's rules
(tests/lab/access.py): no token is root, a token holds what it and its user
are both granted.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fakepve import shapes

from nixmox.adapters.proxmox.permissions import Need, grant, role_name
from nixmox.cli.main import run
from tests.lab.serving import RunningLab

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "homelab.toml"
TOKEN = "nixmox@pve!automation"
SECRET = "least-privilege-secret-1"

Acl = list[tuple[str, str, tuple[str, ...]]]  # path, role, privileges


def parse_grant(lines: list[str]) -> Acl:
    """The ACL entries of printed pveum lines (every line must parse as a command)."""
    roles: dict[str, tuple[str, ...]] = {}
    acl: Acl = []
    for line in lines:
        argv = shlex.split(line)
        assert argv[0] == "pveum", line
        if argv[1:3] == ["pool", "add"]:
            assert argv[4:5] == ["--comment"], line  # the pool the ACLs below name
            continue
        if argv[1:3] == ["role", "add"]:
            assert argv[4] == "--privs", line
            roles[argv[3]] = tuple(argv[5].split(","))
        else:
            assert argv[1:3] == ["acl", "modify"], line
            opts = dict(zip(argv[4::2], argv[5::2], strict=True))
            assert opts["--users"] == TOKEN.split("!")[0] and opts["--tokens"] == TOKEN
            acl.append((argv[3], opts["--roles"], roles[opts["--roles"]]))
    return acl


def apply_grant(lab: RunningLab, acl: Acl, without: tuple[str, str] | None = None) -> None:
    """Grant the user and its token ``acl`` (less one (path, privilege))."""
    lab.pve.acl = {}
    for path, _role, privs in acl:
        kept = [p for p in privs if (path, p) != without]
        if kept:
            for who in (TOKEN.split("!")[0], TOKEN):
                lab.pve.grant(who, path, *kept)


def printed_grant(
    lab: RunningLab,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    job: str,
    config: Path = EXAMPLE,
) -> Acl:
    """`nixmox token --job JOB`, run with the lab's root login (as an admin would); then
    nixmox is switched to the lab's privilege-separated token."""
    for key, value in lab.root_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("NIXMOX_PVE_TOKEN_ID", raising=False)
    assert run(["token", "--job", job, "--config", str(config)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    monkeypatch.delenv("NIXMOX_PVE_USER")
    lab.pve.apitokens[TOKEN] = SECRET
    monkeypatch.setenv("NIXMOX_PVE_TOKEN_ID", TOKEN)
    monkeypatch.setenv("NIXMOX_PVE_TOKEN", SECRET)
    return parse_grant(lines)


def backed_up(lab: RunningLab, capsys: pytest.CaptureFixture[str], config: Path) -> None:
    """Archives made by a real backup run as root (they carry the guests' configs)."""
    lab.pve.acl = None
    assert run(["backup", "--config", str(config)]) == 0
    capsys.readouterr()


@pytest.fixture
def lab_token(lab: RunningLab, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> RunningLab:
    for key, value in lab.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("NIXMOX_STATE_DIR", str(tmp_path / "state"))
    lab.pve.apitokens[TOKEN] = SECRET
    lab.pve.add_declared_guests()
    return lab


def writes(lab: RunningLab, since: int) -> list[tuple[str, str]]:
    return [
        (m, p)
        for m, p, _status in lab.pve.answers[since:]
        if m in ("POST", "PUT", "DELETE") and not p.endswith("/access/ticket")
    ]


def refusals(lab: RunningLab, since: int) -> list[tuple[str, str, int]]:
    """Every answer from ``since`` that refused something; 595 (a node that is
    rebooting does not answer) is no refusal."""
    return [a for a in lab.pve.answers[since:] if a[2] >= 400 and a[2] != 595]


def check_job(
    lab: RunningLab,
    capsys: pytest.CaptureFixture[str],
    acl: Acl,
    argv: list[str] | Callable[[], int],
    done: Callable[[], bool],
    contingent: frozenset[tuple[str, str]] = frozenset(),
) -> None:
    """The three cases of the module docstring for one job (``argv``: the command line,
    or a callable running the job and returning its exit code). ``contingent``: the
    (path, privilege) pairs the grant holds for a path this run does not take (a
    rollback after a failed update, a reboot into a new kernel); each must still be
    named when missing, and only these may go unused by the successful run."""
    if not callable(argv):
        command = argv

        def argv() -> int:
            return run(command)

    # No privileges at all.
    lab.pve.acl = {}
    since = len(lab.pve.answers)
    assert argv() != 0
    err = capsys.readouterr().err
    assert ("nothing was changed" in err or "nothing applied" in err) and "missing" in err
    assert writes(lab, since) == [] and not done()
    # Each privilege of the grant removed alone.
    for path, _role, privs in acl:
        for priv in privs:
            apply_grant(lab, acl, without=(path, priv))
            since = len(lab.pve.answers)
            assert argv() != 0, (path, priv)
            err = capsys.readouterr().err
            # "A or B on PATH" where the grant gave A (PVE 9's name; PVE 8 knows B).
            named = rf"missing(?: privilege)?: {re.escape(priv)}(?: or [\w.]+)* on {path} \("
            assert re.search(named, err), (path, priv, err)
            assert writes(lab, since) == [], (path, priv)
            assert not done()
    # Exactly the grant.
    apply_grant(lab, acl)
    since = len(lab.pve.answers)
    lab.pve.used.clear()
    assert argv() == 0, capsys.readouterr()
    capsys.readouterr()
    assert refusals(lab, since) == []
    assert done()
    held = {(path, priv) for path, _role, privs in acl for priv in privs}
    assert contingent <= held, contingent - held
    for path, _role, privs in acl:
        for priv in privs:
            if (path, priv) in contingent:
                continue
            assert any(
                who == TOKEN and p == priv and (q == path or q.startswith(path + "/"))
                for who, q, p in lab.pve.used
            ), f"{priv} on {path} granted but never used; used: {sorted(lab.pve.used)}"


def seed_nights(lab: RunningLab, vmid: int, kind: str, nights: int = 20) -> None:
    start = datetime.now() - timedelta(days=1)
    for d in range(nights):
        lab.pve.seed_backup("backups", vmid, kind, start - timedelta(days=d))


@pytest.mark.parametrize("storage_prunes", [False, True])
def test_backup_with_pruning_needs_exactly_what_it_prints(
    lab_token: RunningLab,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    storage_prunes: bool,
) -> None:
    lab = lab_token
    if storage_prunes:
        lab.pve.storages["backups"]["prune-backups"] = "keep-last=1"
    seed_nights(lab, 100, "lxc")
    acl = printed_grant(lab, capsys, monkeypatch, "backup")
    privs = {(p, priv) for p, _r, ps in acl for priv in ps}
    # Datastore.Allocate only where vzdump would otherwise prune by the storage's own rule.
    assert (("/storage/backups", "Datastore.Allocate") in privs) is storage_prunes
    assert ("/vms/100", "VM.Backup") in privs and not any(p == "/" for p, _ in privs)
    before = set(lab.pve.backups("backups", 100))

    def done() -> bool:
        now = set(lab.pve.backups("backups", 100))
        return bool(now - before) and bool(before - now)  # a new archive, and old ones pruned

    check_job(lab, capsys, acl, ["backup", "--config", str(EXAMPLE)], done)


def test_printed_lines_name_only_privileges_pve_has() -> None:
    needs = [
        Need("/vms/100", "VM.GuestAgent.Unrestricted|VM.Monitor", "x"),
        Need("/vms/100", "VM.Audit", "x"),
        Need("/vms", "VM.Audit", "x"),
        Need("/storage/backups", "Datastore.AllocateSpace", "x"),
        Need("/vms/102", "root@pam", "raw hostpci"),
    ]
    made = grant(needs)
    lines = made.commands(TOKEN)
    acl = parse_grant(lines)
    assert {priv for _p, _r, ps in acl for priv in ps} <= set(shapes.PRIVILEGES)
    # /vms already holds VM.Audit for /vms/100; smallest paths first; root-only never granted.
    assert [p for p, _r, _ps in acl] == ["/vms/100", "/storage/backups", "/vms"]
    assert ("/vms/100", "VM.Audit") not in {(p, x) for p, _r, ps in acl for x in ps}
    assert [n.why for n in made.root_only] == ["raw hostpci"]


def test_role_ids_follow_from_their_privileges() -> None:
    """A role id names one set of privileges, whatever the order, the path or the job:
    lines printed by another version or for another inventory never redefine it."""
    backup = grant([Need("/vms/100", "VM.Backup", "b"), Need("/vms/100", "VM.Audit", "a")])
    same = grant([Need("/vms/101", "VM.Audit", "x"), Need("/vms/101", "VM.Backup", "y")])
    more = grant([Need("/vms/100", p, "z") for p in ("VM.Audit", "VM.Backup", "VM.Snapshot")])
    assert (
        list(backup.roles)
        == list(same.roles)
        == [role_name("Nixmox", "/vms/7", ["VM.Backup", "VM.Audit"])]
    )
    assert set(more.roles).isdisjoint(backup.roles)
    storage = grant([Need("/storage/backups", "Datastore.AllocateSpace", "s")])
    (name,) = storage.roles
    assert name.startswith("NixmoxStorage-") and all(c.isalnum() or c in ".-_" for c in name)


def test_token_json_lists_root_only_keys(
    lab: RunningLab, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in lab.root_env.items():
        monkeypatch.setenv(key, value)
    assert run(["--json", "token", "--job", "apply", "--config", str(EXAMPLE)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert any("affinity" in why for why in doc["root_only"])
    # The example passes its GPU and USB card through resource mappings: no raw address.
    assert not any("raw PCI address" in why for why in doc["root_only"])
    assert any(
        line.startswith("pveum acl modify /mapping/pci/rtx3060 ") for line in doc["commands"]
    ), doc
    assert all(p in shapes.PRIVILEGES for privs in doc["roles"].values() for p in privs)


def token_inventory(tmp_path: Path, *, memory: str = "8192") -> Path:
    """The example without the Windows VM (its affinity is root@pam's)."""
    text = EXAMPLE.read_text()
    start = text.index('[[guests]]\nname = "win11-gaming"')
    end = text.index("# ---", start)
    text = text[:start] + text[end:]
    text = text.replace("memory = 8192", f"memory = {memory}", 1)
    path = tmp_path / f"nixmox-{memory}.toml"
    path.write_text(text)
    return path


def test_apply_create_then_change_needs_exactly_what_it_prints(
    lab: RunningLab,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("NIXMOX_STATE_DIR", str(tmp_path / "state"))
    lab.pve.apitokens[TOKEN] = SECRET
    create = token_inventory(tmp_path)
    host = tmp_path / "host"
    host.mkdir()

    def printed(config: Path) -> Acl:
        for key, value in lab.root_env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("NIXMOX_PVE_TOKEN_ID", raising=False)
        assert run(["token", "--job", "apply", "--config", str(config)]) == 0
        out = capsys.readouterr().out
        assert "root@pam password login" not in out  # nothing root-only left
        monkeypatch.delenv("NIXMOX_PVE_USER")
        monkeypatch.setenv("NIXMOX_PVE_TOKEN_ID", TOKEN)
        monkeypatch.setenv("NIXMOX_PVE_TOKEN", SECRET)
        return parse_grant([line for line in out.splitlines() if not line.startswith("#")])

    acl = printed(create)
    privs = {(p, x) for p, _r, ps in acl for x in ps}
    assert ("/sdn/zones/localnetwork/vmbr0", "SDN.Use") in privs
    assert {("/vms/100", "VM.Config.Options"), ("/vms/100", "VM.Config.Disk")} <= privs
    argv = ["apply", "--yes", "--host-root", str(host), "--config"]
    check_job(lab, capsys, acl, [*argv, str(create)], lambda: lab.pve.guest(101) is not None)
    # A change: memory of the running VM (reboot policy allowed: a reboot applies it).
    lab.pve.acl = None
    lab.pve.find("pve1", 101).status = "running"
    change = token_inventory(tmp_path, memory="12288")
    acl = printed(change)
    assert {(p, x) for p, _r, ps in acl for x in ps} >= {("/vms/101", "VM.Config.Memory")}
    assert not any(p == "/vms/100" and "Config" in x for p, _r, ps in acl for x in ps)

    def changed() -> bool:
        vm = lab.pve.find("pve1", 101)
        return "12288" in (str(vm.config.get("memory")), str(vm.pending.get("memory")))

    check_job(lab, capsys, acl, [*argv, str(change)], changed)


def test_doctor_names_what_the_scheduled_jobs_preflights_name(
    lab_token: RunningLab,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """doctor's token-privileges asks what apply and every timer's job ask, no less."""
    lab = lab_token
    config = token_inventory(tmp_path)  # every job on a timer, no root-only key
    for key, value in lab.root_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("NIXMOX_PVE_TOKEN_ID", raising=False)
    assert run(["token", "--config", str(config)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    monkeypatch.delenv("NIXMOX_PVE_USER")
    monkeypatch.setenv("NIXMOX_PVE_TOKEN_ID", TOKEN)
    monkeypatch.setenv("NIXMOX_PVE_TOKEN", SECRET)
    acl = parse_grant(lines)

    def doctor() -> list[dict[str, str]]:
        run(["--json", "doctor", "--only", "proxmox", "--config", str(config)])
        checks = json.loads(capsys.readouterr().out)["checks"]
        return [c for c in checks if c["id"] == "token-privileges"]

    apply_grant(lab, acl)
    assert [c["status"] for c in doctor()] == ["PASS"]
    # Without VM.Backup on the container: only backup and backup verify need it, and doctor says so
    # in the words of backup's own preflight.
    apply_grant(lab, acl, without=("/vms/100", "VM.Backup"))
    failed = [c for c in doctor() if c["status"] == "FAIL"]
    assert [c["message"] for c in failed] == [
        "missing for backup, backup-verify: VM.Backup on /vms/100 (back up and prune nixos-lxc)"
    ]
    assert run(["backup", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "missing: VM.Backup on /vms/100 (back up and prune nixos-lxc)" in err
