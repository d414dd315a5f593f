"""What plan knows before apply (issue 18): each problem an error at plan time,
located in the inventory, and an apply that applies nothing while there is one.

Against the lab (fakepve seeded from examples/homelab.toml: node pve1, storages
local, vm-disks, ct-disks, backups, template VM 9000, no guests yet).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nixmox.cli.main import run
from nixmox.inventory.model import Inventory
from nixmox.provision.checks import Storages, did_you_mean, node_problem
from tests.lab.serving import RunningLab

NEWCOMER = """\
[[nodes]]
name = "pve1"

[[bridges]]
name = "vmbr3"
node = "pve1"
ports = []
cidr = "203.0.113.2/24"

[[guests]]
name = "dns"
vmid = 110
kind = "lxc"
node = "pve1"
os = "nixos"
memory = 512
template = "local:vztmpl/nixos-lxc-25.05.tar.xz"

[[guests.net]]
bridge = "vmbr3"
ip = "dhcp"

[[guests]]
name = "web"
vmid = 111
kind = "vm"
node = "pve1"
os = "nixos"
memory = 2048
clone = 9000

[[guests.disks]]
slot = "scsi0"
storage = "vmdisks"
size = "16G"

[[guests.net]]
bridge = "vmbr3"
"""


#: The newcomer's inventory with both mistakes fixed.
FIXED = NEWCOMER.replace('"vmdisks"', '"vm-disks"').replace(
    'os = "nixos"\nmemory = 512',
    'os = "nixos"\nmemory = 512\nrootfs = { storage = "ct-disks", size = "8G" }',
)


@pytest.fixture
def env(lab: RunningLab, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> RunningLab:
    for key, value in lab.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("NIXMOX_STATE_DIR", str(tmp_path / "state"))
    return lab


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "nixmox.toml"
    path.write_text(text)
    return path


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def plan_text(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, str]:
    code = run(["plan", "--config", str(path)])
    return code, capsys.readouterr().out


def test_newcomers_two_mistakes_are_plan_errors_and_apply_applies_nothing(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path, NEWCOMER)
    assert run(["config", "check", "--config", str(path)]) == 0  # valid on its own
    capsys.readouterr()
    code, out = plan_text(capsys, path)
    assert code == 1
    rootfs = f"{path}:{line_of(NEWCOMER, '[[guests]]')}:1: guests[0]: a container needs a root disk"
    assert rootfs in out and 'storage = "ct-disks"' in out
    typo = line_of(NEWCOMER, 'storage = "vmdisks"')
    storage = (
        f"{path}:{typo}:1: guests[1].disks[0].storage: "
        "storage 'vmdisks' does not exist (did you mean 'vm-disks'?)"
    )
    assert storage in out
    assert "2 errors." in out
    before = len(env.pve.requests)
    code = run(["apply", "--yes", "--config", str(path)])
    captured = capsys.readouterr()
    assert code == 1
    assert "nothing applied: the plan has 2 errors" in captured.err
    assert not [r for r in env.pve.requests[before:] if r[0] != "GET"]  # not even the bridge
    assert " - --" not in captured.out + captured.err


def test_fixed_newcomer_plan_lists_what_each_create_sets(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fixed = NEWCOMER.replace('"vmdisks"', '"vm-disks"').replace(
        '[[guests.net]]\nbridge = "vmbr3"\nip = "dhcp"',
        '[guests.rootfs]\nstorage = "ct-disks"\nsize = "8G"\n\n'
        '[[guests.net]]\nbridge = "vmbr3"\nip = "dhcp"',
    )
    path = write(tmp_path, fixed)
    code, out = plan_text(capsys, path)
    assert code == 0, out
    dns = out[out.index("+ dns (lxc 110 on pve1): create") :]
    attributes = dict(re.findall(r"^      \+ (\S+)\s+= (.*)$", dns.split("  + web")[0], flags=re.M))
    assert attributes == {
        "ostemplate": "local:vztmpl/nixos-lxc-25.05.tar.xz",
        "unprivileged": "1",
        "hostname": "dns",
        "ostype": "nixos",
        "memory": "512",
        "net0": "name=eth0,bridge=vmbr3,ip=dhcp",
        "features": "nesting=1",
        "rootfs": "ct-disks:8",
    }
    assert "+ clone" in out and "9000 (full clone)" in out
    assert "Plan: 3 to create" in out
    # Apply sends what plan listed: the container has exactly those keys.
    assert run(["apply", "--yes", "--config", str(path)]) == 0
    config = env.pve.guest(110).config
    assert config["features"] == "nesting=1" and str(config["memory"]) == "512"


@pytest.mark.parametrize(
    ("old", "new", "needle", "key", "fragment"),
    [
        (
            'storage = "vm-disks"',
            'storage = "local"',
            'storage = "local"',
            "guests[1].disks[0].storage",
            "storage 'local' does not hold VM disks (content images; it has "
            "iso,snippets,vztmpl); storages on pve1 that do: vm-disks",
        ),
        (
            'bridge = "vmbr3"\nip',
            'bridge = "vmbr9"\nip',
            'bridge = "vmbr9"',
            "guests[0].net[0].bridge",
            "bridge 'vmbr9' does not exist on pve1 and is not declared in [[bridges]]",
        ),
        (
            "clone = 9000",
            "clone = 9001",
            "clone = 9001",
            "guests[1].clone",
            "clone source 9001 is not a template VM",
        ),
        (
            'template = "local:vztmpl/nixos-lxc-25.05.tar.xz"',
            'template = "vm-disks:vztmpl/nixos-lxc-25.05.tar.xz"',
            'template = "vm-disks',
            "guests[0].template",
            "storage 'vm-disks' does not hold container templates",
        ),
    ],
    ids=["content", "bridge", "clone-source", "template-storage"],
)
def test_each_problem_is_an_error_at_its_key(
    env: RunningLab,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    old: str,
    new: str,
    needle: str,
    key: str,
    fragment: str,
) -> None:
    assert old in FIXED
    text = FIXED.replace(old, new, 1)
    path = write(tmp_path, text)
    code, out = plan_text(capsys, path)
    assert code == 1
    expected = f"{path}:{line_of(text, needle)}:1: {key}: {fragment}"
    assert expected in out, out
    assert "1 error." in out


def test_node_not_in_the_cluster_and_backup_storage(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = (
        NEWCOMER.replace('storage = "vmdisks"', 'storage = "vm-disks"')
        .replace('[[nodes]]\nname = "pve1"', '[[nodes]]\nname = "pve1"\n\n[[nodes]]\nname = "pve7"')
        .replace(
            'name = "web"\nvmid = 111\nkind = "vm"\nnode = "pve1"',
            'name = "web"\nvmid = 111\nkind = "vm"\nnode = "pve7"',
        )
        + '\n[backups]\nstorage = "local"\n'
    )
    path = write(tmp_path, text)
    code = run(["plan", "--json", "--config", str(path)])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    web = next(g for g in report["guests"] if g["name"] == "web")
    assert web["action"] == "error"
    assert "guests[1].node: node 'pve7' is not in the cluster" in web["error"]
    assert any(
        "backups.storage: storage 'local' does not hold backups" in e for e in report["errors"]
    )


def test_existing_vmid_of_the_other_kind_is_an_error(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    env.pve.add_vm(110, "squatter", node="pve1")
    path = write(tmp_path, NEWCOMER.replace('"vmdisks"', '"vm-disks"'))
    code, out = plan_text(capsys, path)
    assert code == 1
    assert f"{path}:{line_of(NEWCOMER, '[[guests]]')}:1: guests[0]: vmid 110 is a qemu guest" in out


def test_a_failed_apply_line_has_no_stray_dashes(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fixed = FIXED
    env.pve.fail("POST", "/nodes/pve1/qemu/9000/clone", 500, "storage is full", times=10)
    assert run(["apply", "--yes", "--config", str(write(tmp_path, fixed))]) == 1
    out = capsys.readouterr().out
    failed = next(line for line in out.splitlines() if "FAILED" in line)
    assert re.match(r"^  FAILED guest web: POST /nodes/pve1/qemu/9000/clone: HTTP 500", failed), (
        failed
    )
    assert "--" not in failed and ": -" not in failed


# -- the rules, as pure functions ---------------------------------------------


def test_declared_storages_overlay_the_clusters() -> None:
    inv = Inventory.model_validate(
        {
            "storages": [
                {
                    "storage": "fast",
                    "type": "zfspool",
                    "dataset": "rpool/fast",
                    "content": ["images"],
                    "nodes": ["pve2"],
                }
            ]
        }
    )
    cluster = {("pve1", "local"): frozenset({"vztmpl", "iso"})}
    known = Storages.of(inv, cluster, frozenset({"local"}), frozenset({"pve1", "pve2"}))
    # Declared, to be created on pve2 only: fine there, not enabled on pve1.
    assert known.problem("fast", "pve2", "images") is None
    assert "not enabled on node pve1" in str(known.problem("fast", "pve1", "images"))
    assert "does not hold VM disks" in str(known.problem("local", "pve1", "images"))
    assert "did you mean 'local'" in str(known.problem("locl", "pve1", "vztmpl"))
    hidden = Storages.of(
        inv, cluster, frozenset({"local", "vm-disks"}), frozenset({"pve1"}), frozenset({"vm-disks"})
    )
    assert hidden.problem("vm-disks", "pve1", "images") == (
        "this token cannot see storage vm-disks (needs Datastore.Audit on /storage/vm-disks)"
    )


def test_plan_names_a_storage_the_token_cannot_audit_not_a_disabled_one(
    env: RunningLab,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A token with Datastore.AllocateSpace only: /storage lists the storage,
    /cluster/resources does not (PVE lists a storage there only to Datastore.Audit)."""
    path = write(tmp_path, FIXED)
    token = "planner@pve!plan"
    env.pve.apitokens[token] = "plan-secret-123456"
    env.pve.acl = {}
    for who in (token.split("!")[0], token):
        env.pve.grant(who, "/", "VM.Audit", "Sys.Audit")
        env.pve.grant(who, "/storage/local", "Datastore.Audit")
        env.pve.grant(who, "/storage/ct-disks", "Datastore.Audit")
        env.pve.grant(who, "/storage/vm-disks", "Datastore.AllocateSpace")
    monkeypatch.delenv("NIXMOX_PVE_USER", raising=False)
    monkeypatch.setenv("NIXMOX_PVE_TOKEN_ID", token)
    monkeypatch.setenv("NIXMOX_PVE_TOKEN", "plan-secret-123456")
    code, out = plan_text(capsys, path)
    assert code != 0
    assert (
        "this token cannot see storage vm-disks (needs Datastore.Audit on /storage/vm-disks)" in out
    )
    assert "not enabled on node" not in out


def test_node_problems_and_suggestions() -> None:
    assert node_problem("pve1", {"pve1": "online"}) is None
    assert "is offline" in str(node_problem("pve2", {"pve2": "offline"}))
    assert "did you mean 'pve1'" in str(node_problem("pve11", {"pve1": "online"}))
    assert did_you_mean("zzz", ["local"]) == ""


def test_a_key_dropped_from_the_inventory_is_unmanaged_now(
    env: RunningLab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path, FIXED)
    assert run(["apply", "--yes", "--config", str(path)]) == 0
    capsys.readouterr()
    # The user removes `memory` from dns: nixmox leaves 512 in place and says so.
    path.write_text(FIXED.replace('os = "nixos"\nmemory = 512\n', 'os = "nixos"\n', 1))
    code, out = plan_text(capsys, path)
    assert code == 0, out
    assert "= dns (lxc 110 on pve1" in out
    assert "memory: 512   # unmanaged now: nixmox set it before" in out
    assert str(env.pve.guest(110).config["memory"]) == "512"
    code = run(["plan", "--json", "--config", str(path)])
    report = json.loads(capsys.readouterr().out)
    assert next(g for g in report["guests"] if g["name"] == "dns")["unmanaged_now"] == ["memory"]
    # A key nixmox never set is not "unmanaged now": web never declared swap or cores.
    assert next(g for g in report["guests"] if g["name"] == "web")["unmanaged_now"] == []
