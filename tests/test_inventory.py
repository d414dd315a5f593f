"""The inventory: the example is valid, small inventories are valid on their own,
and every broken variant is refused with the right FILE:LINE and exit code 1."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nixmox.cli.main import run
from nixmox.inventory.load import InventoryInvalid, load_inventory, parse_inventory

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "homelab.toml"
BASE = EXAMPLE.read_text()


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line number of the ``occurrence``-th line containing ``needle``."""
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    assert len(hits) >= occurrence, f"{needle!r} not in text"
    return hits[occurrence - 1]


def replace_once(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) >= 1, old
    return text.replace(old, new, 1)


def test_example_passes_config_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--config", str(EXAMPLE), "config", "check"]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "3 guests" in out


def test_example_models_the_seed_lab() -> None:
    inv = parse_inventory(BASE)
    assert [g.name for g in inv.guests] == ["nixos-lxc", "nixos-vm", "win11-gaming"]
    win = inv.guest("win11-gaming")
    assert [p.device for p in win.hostpci] == ["0000:01:00", "0000:03:00.0"]
    assert win.hostpci[0].x_vga is True
    assert {b.name for b in inv.bridges} == {"vmbr0", "vmbr1", "vmbr2"}
    assert inv.backups is not None and inv.backups.keep is not None
    assert inv.backups.keep.keep_daily == 7
    assert inv.proxmox.url is not None and ".home.arpa" in inv.proxmox.url


MAINTENANCE_ONLY = """\
timezone = "UTC"
[[guests]]
name = "web"
vmid = 100
kind = "lxc"
node = "pve1"
[[guests]]
name = "db"
vmid = 101
kind = "vm"
node = "pve1"
"""

SNAPSHOTS_ONLY = """\
timezone = "UTC"
[snapshots.policies.standard]
keep-last = 2
keep-daily = 5
keep-weekly = 2
[[snapshots.datasets]]
dataset = "bpool/a"
policy = "standard"
recursive = true
"""

BACKUP_ONLY = """\
timezone = "UTC"
[proxmox]
url = "https://pve.example:8006"
token_id = "nixmox@pve!backup"
[[guests]]
name = "nixos-lxc"
vmid = 100
kind = "lxc"
node = "pve1"
[backups]
storage = "local"
[backups.keep]
keep-last = 2
keep-daily = 5
keep-weekly = 2
"""


@pytest.mark.parametrize("text", [MAINTENANCE_ONLY, SNAPSHOTS_ONLY, BACKUP_ONLY, ""])
def test_small_inventories_are_valid(text: str, tmp_path: Path) -> None:
    path = tmp_path / "nixmox.toml"
    path.write_text(text)
    assert run(["config", "check", "--config", str(path)]) == 0


# (name, mutated text, needle on the offending line, message fragment)
BROKEN: list[tuple[str, str, str, str]] = [
    (
        "unknown key",
        replace_once("swap = 512", "swapp = 512"),
        "swapp = 512",
        "guests[0].swapp: unknown key; did you mean swap?",
    ),
    (
        "misspelt key",
        replace_once("swap = 512", "swap = 512\nmemroy = 2048"),
        "memroy = 2048",
        "guests[0].memroy: unknown key; did you mean memory?",
    ),
    (
        "unknown table",
        BASE + "\n[monitoring]\nenabled = true\n",
        "[monitoring]",
        "monitoring: unknown key",
    ),
    (
        "duplicate vmid",
        replace_once("vmid = 101", "vmid = 100"),
        "vmid = 100",  # second occurrence, see below
        "duplicate vmid 100",
    ),
    (
        "duplicate name",
        replace_once('name = "nixos-vm"', 'name = "nixos-lxc"'),
        'name = "nixos-lxc"',
        "duplicate guest name 'nixos-lxc'",
    ),
    (
        "vmid below 100",
        replace_once("vmid = 101", "vmid = 99"),
        "vmid = 99",
        "greater than or equal to 100",
    ),
    ("wrong type", replace_once("cores = 8", 'cores = "8"'), 'cores = "8"', 'got the string "8"'),
    ("bool as int", replace_once("onboot = false", "onboot = 0"), "onboot = 0", "valid boolean"),
    (
        "a string where a table goes",
        replace_once('name = "nixos-vm"\n', 'name = "nixos-vm"\nstartup = "order=1"\n'),
        'startup = "order=1"',
        "startup: should be a table ({ key = value } or its own [section]), got the string",
    ),
    (
        "unknown guest kind",
        replace_once('kind = "lxc"', 'kind = "container"'),
        'kind = "container"',
        "'lxc' or 'vm'",
    ),
    (
        "undeclared node",
        replace_once('node = "pve1"\nos = "windows"', 'node = "pve9"\nos = "windows"'),
        'node = "pve9"',
        "node 'pve9' is not declared",
    ),
    (
        "non-https url",
        replace_once('url = "https://pve', 'url = "http://pve'),
        'url = "http://pve',
        "must start with https://",
    ),
    (
        "keep-all with another keep",
        replace_once("[backups.keep]\n", "[backups.keep]\nkeep-all = true\n"),
        "keep-all = true",
        "keep-all cannot be combined",
    ),
    (
        "negative keep",
        replace_once("keep-weekly = 8", "keep-weekly = -1"),
        "keep-weekly = -1",
        "greater than or equal to 0",
    ),
    (
        "TOML syntax error",
        replace_once("cores = 8", "cores = = 8"),
        "cores = = 8",
        "TOML syntax error",
    ),
    (
        "TOML duplicate key",
        replace_once("cores = 8", "cores = 8\ncores = 9"),
        "cores = 9",
        "TOML syntax error",
    ),
    (
        "bad PCI address",
        replace_once('device = "0000:03:00.0"', 'device = "03:00.0"'),
        'device = "03:00.0"',
        "not a PCI address DDDD:BB:DD[.F]",
    ),
    (
        "passthrough device on two guests",
        replace_once(
            "clone = 9000\n", 'clone = 9000\n[[guests.hostpci]]\ndevice = "0000:01:00.1"\n'
        ),
        'device = "0000:01:00"',
        "already passed to 'nixos-vm'",
    ),
    (
        "undefined policy",
        replace_once('policy = "archive"', 'policy = "gold"'),
        'policy = "gold"',
        "policy 'gold' is not defined",
    ),
    (
        "undeclared dataset",
        replace_once('dataset = "tank/shared"', 'dataset = "tank/photos"'),
        'dataset = "tank/photos"',
        "dataset 'tank/photos' is not declared in [[datasets]] (once [[datasets]] lists one",
    ),
    (
        "bad calendar",
        replace_once('backup = "*-*-* 02:30:00"', 'backup = "*-*-* 25:30:00"'),
        'backup = "*-*-* 25:30:00"',
        "not a systemd calendar spec",
    ),
    (
        "unknown zone",
        replace_once('timezone = "Europe/Vienna"', 'timezone = "Europe/Atlantis"'),
        'timezone = "Europe/Atlantis"',
        "unknown time zone",
    ),
    (
        "missing required key",
        replace_once('kind = "lxc"\n', ""),
        "[[guests]]",
        "guests[0].kind: required key is missing",
    ),
    (
        "unknown key inside an inline table",
        replace_once('efitype = "4m"', 'efi_type = "4m"'),
        'efi_type = "4m"',
        "guests[2].efidisk.efi_type: unknown key; did you mean efitype?",
    ),
    (
        "VM-only key on a container",
        replace_once("swap = 512", 'swap = 512\nbios = "ovmf"'),
        'bios = "ovmf"',
        "bios applies to VMs",
    ),
    (
        "dead-man switch shorter than the health checks",
        replace_once('inputs = ["nixpkgs"]', 'inputs = ["nixpkgs"]\ndead_man = "90s"'),
        'dead_man = "90s"',
        "dead_man (90s) must be longer than the health checks may take (2min)",
    ),
]


def test_unknown_keys_suggest_the_closest_key_of_their_own_table(tmp_path: Path) -> None:
    path = tmp_path / "nixmox.toml"
    path.write_text(
        SNAPSHOTS_ONLY.replace("keep-daily = 5", "keep_daily = 5")
        + "\n[proxmox]\nzzzzz = 1\ntoken = 'x'\n"
    )
    with pytest.raises(InventoryInvalid) as caught:
        load_inventory(path)
    lines = {d.path: d.message for d in caught.value.diagnostics}
    # A policy is a table under a name of the user's choosing: its keys are keep-*.
    assert (
        lines["snapshots.policies.standard.keep_daily"] == "unknown key; did you mean keep-daily?"
    )
    assert lines["proxmox.token"] == "unknown key; did you mean token_id?"
    assert lines["proxmox.zzzzz"] == "unknown key"


@pytest.mark.parametrize(("name", "text", "needle", "fragment"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_variant_is_refused_at_its_line(
    name: str,
    text: str,
    needle: str,
    fragment: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "homelab.toml"
    path.write_text(text)
    assert run(["config", "check", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    occurrence = 2 if name.startswith("duplicate") else 1
    expected_line = line_of(text, needle, occurrence)
    lines = [line for line in err.splitlines() if fragment in line]
    assert lines, f"no line with {fragment!r} in:\n{err}"
    match = re.match(r"^(.+):(\d+):(\d+): ", lines[0])
    assert match is not None, lines[0]
    assert match.group(1) == str(path)
    assert int(match.group(2)) == expected_line, lines[0]
    assert "Traceback" not in err


def test_several_problems_are_all_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = replace_once("vmid = 101", "vmid = 99")
    text = replace_once("cores = 8", 'cores = "8"', text)
    text = replace_once('policy = "archive"', 'policy = "gold"', text)
    path = tmp_path / "n.toml"
    path.write_text(text)
    assert run(["config", "check", "--config", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    problems = [line for line in err if re.match(r"^.+:\d+:\d+: ", line)]
    # Field errors and reference errors are reported together, each at its line.
    assert len(problems) == 3
    assert err[-1].endswith("3 problems")
    gold = re.compile(r"snapshots\.datasets\[\d+\]\.policy: policy 'gold' is not defined")
    assert any(gold.search(p) for p in problems)


def test_partial_storages_and_bridges_are_fine(tmp_path: Path) -> None:
    """[[storages]] and [[bridges]] list what nixmox manages; a guest may name others
    (plan checks them against the cluster, see test_provision)."""
    text = replace_once('storage = "backups"\nmode', 'storage = "nas"\nmode')
    text = replace_once('bridge = "vmbr1"', 'bridge = "vmbr7"', text)
    path = tmp_path / "n.toml"
    path.write_text(text)
    assert run(["config", "check", "--config", str(path)]) == 0


def test_reference_problems_are_all_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = replace_once("vmid = 101", "vmid = 100")
    text = replace_once('node = "pve1"\nos = "windows"', 'node = "pve9"\nos = "windows"', text)
    text = replace_once('policy = "archive"', 'policy = "gold"', text)
    path = tmp_path / "n.toml"
    path.write_text(text)
    assert run(["config", "check", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "duplicate vmid" in err and "pve9" in err and "gold" in err


def test_json_report_lists_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "n.toml"
    path.write_text(replace_once("vmid = 101", "vmid = 99"))
    assert run(["config", "check", "--json", "--config", str(path)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False
    assert report["problems"][0]["path"] == "guests[1].vmid"
    assert report["problems"][0]["line"] == line_of(BASE, "vmid = 101")


def test_missing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["config", "check", "--config", str(tmp_path / "nope.toml")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.toml" in err[0] and "not found" in err[0]


def test_schema_describes_the_inventory(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["config", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["additionalProperties"] is False
    keep = schema["$defs"]["KeepOptions"]["properties"]
    assert {"keep-all", "keep-last", "keep-daily", "keep-weekly"} <= set(keep)
    guest = schema["$defs"]["Guest"]
    assert set(guest["required"]) == {"name", "vmid", "kind", "node"}
    assert guest["properties"]["vmid"]["minimum"] == 100


def test_schema_accepts_the_example() -> None:
    """The exported schema is usable by an editor: it validates the example."""
    import tomllib

    import jsonschema

    schema = subprocess.run(
        [sys.executable, "-m", "nixmox.cli.main", "config", "schema"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    jsonschema.validate(tomllib.loads(BASE), json.loads(schema))


def test_broken_file_never_shows_a_traceback_in_a_subprocess(tmp_path: Path) -> None:
    path = tmp_path / "n.toml"
    path.write_text("[[guests]\nname=")
    proc = subprocess.run(
        [sys.executable, "-m", "nixmox.cli.main", "config", "check", "--config", str(path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"{path}:1:")
    assert "Traceback" not in proc.stderr


def test_parse_reports_through_exception() -> None:
    with pytest.raises(InventoryInvalid) as info:
        parse_inventory('timezone = "UTC"\n[[guests]]\nname = "x"\n', "f.toml")
    paths = {d.path for d in info.value.diagnostics}
    assert paths == {"guests[0].vmid", "guests[0].kind", "guests[0].node"}
    assert all(d.line == 2 for d in info.value.diagnostics)


def test_a_broken_guest_is_not_also_reported_as_undeclared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = BASE.replace("[backups]\n", '[backups]\nguests = ["nixos-vm"]\n', 1)
    text = replace_once("cores = 4\nmemory = 8192", 'cores = "4"\nmemory = 8192', text)
    path = tmp_path / "n.toml"
    path.write_text(text)
    assert run(["config", "check", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "guests[1].cores" in err and "not declared" not in err


GUEST_STORAGE = """\
timezone = "UTC"
[[datasets]]
name = "rpool/data"
[[datasets]]
name = "rpool/data/vm"
[[datasets]]
name = "tank/shared"
[[storages]]
storage = "vm-disks"
type = "zfspool"
dataset = "rpool/data/vm"
content = ["images"]
[snapshots.policies.p]
keep-daily = 7
[[snapshots.datasets]]
dataset = "{dataset}"
policy = "p"
recursive = {recursive}
"""


@pytest.mark.parametrize(
    ("dataset", "recursive", "refused"),
    [
        ("rpool/data/vm", "true", True),  # every guest volume below it
        ("rpool/data", "true", True),  # the storage's dataset is inside the tree
        ("rpool/data/vm/vm-101-disk-0", "false", True),  # one guest volume
        ("rpool/data/vm", "false", False),  # the parent alone covers no volume
        ("rpool/data", "false", False),
        ("tank/shared", "true", False),
    ],
)
def test_snapshots_of_datasets_holding_guest_disks_are_refused(
    dataset: str, recursive: str, refused: bool
) -> None:
    text = GUEST_STORAGE.format(dataset=dataset, recursive=recursive)
    if not refused:
        parse_inventory(text, "f.toml")
        return
    with pytest.raises(InventoryInvalid) as info:
        parse_inventory(text, "f.toml")
    [problem] = [d for d in info.value.diagnostics if "guest disks" in d.message]
    assert problem.path == "snapshots.datasets[0].dataset"
    assert "storage vm-disks" in problem.message and "not most recent" not in problem.message
