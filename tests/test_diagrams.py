"""`render diagram`: each diagram against the inventory, the live lab, and mermaid's own parser."""

from __future__ import annotations

import hashlib
import html
import json
import re
import subprocess
from pathlib import Path

import pytest

from nixmox.adapters.proxmox.cluster import GuestRow
from nixmox.cli.main import run
from nixmox.inventory.load import load_inventory, parse_inventory
from nixmox.inventory.model import Inventory
from nixmox.observe import diagrams
from nixmox.observe.diagrams import Live, LiveBridge, LiveGuest, node_id
from nixmox.observe.live import guest_facts
from tests.lab.serving import RunningLab
from tests.peers.require import missing, need_binary

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "homelab.toml"
MERMAID = ROOT / "tests" / "mermaid"

_EDGE = re.compile(r"^\s+(\S+) (-->|-\.->)(?:\|\"(.*)\"\|)? (\S+)$")
_NODE = re.compile(r"^\s+([A-Za-z0-9_]+)[\[\(\{]+\"(.*)\"[\]\)\}]+$")


def edges(text: str) -> set[tuple[str, str, str, str]]:
    """(from, arrow, label, to) of every edge."""
    return {
        (m[1], m[2], re.sub(r"\\(.)", r"\1", m[3] or ""), m[4])
        for line in text.splitlines()
        if (m := _EDGE.match(line))
    }


def links(text: str) -> set[tuple[str, str]]:
    return {(a, b) for a, _, _, b in edges(text)}


def nodes(text: str) -> dict[str, str]:
    """id -> label of every node (markdown's backslash escapes undone, as mermaid shows it)."""
    return {
        m[1]: re.sub(r"\\(.)", r"\1", m[2])
        for line in text.splitlines()
        if (m := _NODE.match(line))
    }


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return load_inventory(EXAMPLE)


def validate(tmp_path: Path, texts: dict[str, str]) -> dict[str, dict[str, str]]:
    """Run mermaid's parser (tests/mermaid/validate.mjs) over ``texts``; name -> its verdict."""
    node = need_binary("node", "nodejs")
    if not (MERMAID / "node_modules" / "mermaid").is_dir():
        missing("mermaid not installed: run scripts/setup.sh (npm ci in tests/mermaid)")
    files = []
    for name, text in texts.items():
        path = tmp_path / f"{name}.mmd"
        path.write_text(text, encoding="utf-8")
        files.append(str(path))
    proc = subprocess.run(
        [node, str(MERMAID / "validate.mjs"), *files],
        cwd=MERMAID,
        capture_output=True,
        text=True,
        timeout=60,
    )
    verdicts = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(verdicts) == len(files), proc.stderr
    return {Path(v["file"]).stem: v for v in verdicts}


# -- each diagram against the inventory --------------------------------------------


def test_network_has_every_node_bridge_and_guest_link(inv: Inventory) -> None:
    text = diagrams.network(inv, reason="test")
    labels = nodes(text)
    drawn = links(text)
    assert ("internet", "router") in drawn
    assert "192.0.2.1" in labels["router"]
    for node in inv.nodes:
        assert ("router", node_id("node", node.name)) in drawn
    for bridge in inv.bridges:
        ident = node_id("bridge", bridge.node or "pve1", bridge.name)
        assert (node_id("node", "pve1"), ident) in drawn
        assert labels[ident].startswith(bridge.name)
        if bridge.cidr:
            assert bridge.cidr in labels[ident]
    for guest in inv.guests:
        ident = node_id("guest", guest.vmid)
        kind = "LXC" if guest.kind == "lxc" else "VM"
        assert labels[ident] == f"{guest.name}<br/>{kind} {guest.vmid}"
        for net in guest.net:
            assert (node_id("bridge", guest.node, net.bridge), ident) in drawn
    # Three guests, one NIC each: no other guest links.
    assert sum(1 for a, b in drawn if b.startswith("guest_")) == 3
    assert "%% drawn from the inventory alone: test" in text.splitlines()


def test_storage_has_pools_datasets_storages_and_disks(inv: Inventory) -> None:
    text = diagrams.storage(inv)
    labels = nodes(text)
    found = edges(text)
    drawn = links(text)
    for pool in inv.pools:
        assert node_id("pool", pool.name) in labels
    for ds in inv.datasets:
        pool = ds.name.split("/")[0]
        assert (node_id("pool", pool), node_id("dataset", ds.name)) in drawn
    for st in inv.storages:
        ident = node_id("storage", st.storage)
        assert f"Storage {st.storage}" in labels[ident]
        source = node_id("dataset", st.dataset) if st.dataset else node_id("node", "pve1")
        assert (source, ident) in drawn
    assert ("storage_ct_2ddisks", "-->", "rootfs 16G", "guest_100") in found
    assert ("storage_vm_2ddisks", "-->", "scsi0 32G", "guest_101") in found
    assert ("storage_vm_2ddisks", "-->", "scsi0 256G", "guest_102") in found
    assert ("storage_vm_2ddisks", "-->", "efidisk0", "guest_102") in found
    assert "vzdump backups" in labels["storage_backups"]
    for guest in inv.guests:
        assert (node_id("guest", guest.vmid), "-.->", "vzdump", "storage_backups") in found


def test_updates_follows_the_schedules(inv: Inventory) -> None:
    text = diagrams.updates(inv)
    labels = nodes(text)
    found = edges(text)
    assert inv.schedules is not None and inv.snapshots is not None
    schedules = {
        "snapshot": inv.schedules.snapshot,
        "backup": inv.schedules.backup,
        "backup-verify": inv.schedules.backup_verify,
        "update-host": inv.schedules.update_host,
        "update-nixos": inv.schedules.update_nixos,
        "update-windows": inv.schedules.update_windows,
    }
    for job, spec in schedules.items():
        assert spec is not None
        assert labels[node_id("timer", job)] == f"nixmox-{job}.timer<br/>{spec}"
    for target in inv.snapshots.datasets:
        assert ("timer_snapshot", "-->", "zfs snapshot -r", node_id("dataset", target.dataset)) in (
            found
        )
        assert f"policy {target.policy}" in labels[node_id("dataset", target.dataset)]
    assert "keep-hourly 24, keep-daily 14, keep-weekly 8" in labels["dataset_tank_2fshared"]
    assert ("timer_backup", "-->", "", "vzdump") in found
    assert ("vzdump", "-->", "archive, then prune", "storage_backups") in found
    assert labels["storage_backups"].endswith(
        "keep-last 3, keep-daily 7, keep-weekly 4, keep-monthly 6"
    )
    for guest in inv.guests:
        assert (node_id("guest", guest.vmid), "-.->", "", "vzdump") in found
    assert ("timer_update_2dhost", "-->", "apt dist-upgrade", "node_pve1") in found
    assert ("timer_update_2dhost", "-->", "snapshot first", "dataset_rpool_2fROOT_2fpve_2d1") in (
        found
    )
    nixos = {b for a, _, _, b in found if a == "timer_update_2dnixos"}
    assert nixos == {"guest_100", "guest_101"}
    assert {b for a, _, _, b in found if a == "timer_update_2dwindows"} == {"guest_102"}


def test_unscheduled_and_unusual_names_still_parse(tmp_path: Path) -> None:
    """Labels with quotes, brackets, #, <, > and backticks; a job without a schedule."""
    inv = parse_inventory(
        """
[[nodes]]
name = "end"
[[bridges]]
name = "vmbr0"
comment = 'say "hi" [a] {b} (c) #1 <b>x</b> `md` | pipe; end'
[[guests]]
name = "graph"
vmid = 100
kind = "vm"
node = "end"
net = [{ bridge = "vmbr0" }]
update = { method = "windows" }
"""
    )
    texts = {kind: diagrams.diagram(kind, inv) for kind in diagrams.KINDS}
    assert "not scheduled: run by hand" in texts["updates"]
    assert "#quot;hi#quot;" in texts["network"]
    verdicts = validate(tmp_path, texts)
    assert all(v["ok"] for v in verdicts.values()), verdicts


# -- mermaid's own parser ------------------------------------------------------------


def test_every_diagram_parses_and_a_broken_one_does_not(inv: Inventory, tmp_path: Path) -> None:
    texts = {kind: diagrams.diagram(kind, inv, reason="test") for kind in diagrams.KINDS}
    live = Live(
        source="https://pve.home.arpa:8006",
        guests=(LiveGuest(200, "lxc", "stray", "pve1", "running", ("vmbr9",)),),
        bridges=(LiveBridge("pve1", "vmbr0", "192.0.2.2/24"),),
    )
    texts.update({f"live-{kind}": diagrams.diagram(kind, inv, live) for kind in diagrams.KINDS})
    texts["broken"] = texts["network"].replace('router["Router', 'router[("Router', 1)
    verdicts = validate(tmp_path, texts)
    assert not verdicts["broken"]["ok"]
    assert "Parse error" in verdicts["broken"]["error"]
    del verdicts["broken"]
    assert all(v["ok"] and v["type"].startswith("flowchart") for v in verdicts.values()), verdicts


def test_html_page_holds_the_source_and_loads_nothing_from_outside(inv: Inventory) -> None:
    text = diagrams.network(inv)
    page = diagrams.html(text, "nixmox <lab>")
    assert "<title>nixmox &lt;lab&gt;</title>" in page
    assert '<pre class="mermaid">' in page and "&lt;br/&gt;" in page
    assert "http://" not in page and "https://" not in page.replace("https://pve.home.arpa", "")
    assert "default-src 'none'" in page
    inlined = diagrams.html(text, "t", script="var mermaid = {}; '</script>';")
    assert "<\\/script>" in inlined and "mermaid.initialize" in inlined


def test_the_packaged_mermaid_is_the_pinned_one() -> None:
    lock = json.loads((MERMAID / "package-lock.json").read_text())
    pinned = lock["packages"]["node_modules/mermaid"]["version"]
    readme = (ROOT / "src/nixmox/observe/vendor/README.md").read_text()
    assert f"mermaid {pinned}" in readme
    script = diagrams.mermaid_script()
    assert hashlib.sha256(script.encode()).hexdigest() in readme
    installed = MERMAID / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"
    if installed.is_file():
        assert installed.read_text(encoding="utf-8") == script


def test_labels_show_what_was_written_not_markdown() -> None:
    assert diagrams.label("*-*-* 03:00:00") == '"\\*-\\*-\\* 03:00:00"'
    assert diagrams.label("a_b", "- c", "9900. d") == '"a\\_b<br/>\\- c<br/>9900\\. d"'


# -- in a real browser --------------------------------------------------------------

_LABEL = re.compile(r'<span class="(nodeLabel|edgeLabel)"[^>]*>(.*?)</span>', re.S)


def rendered(tmp_path: Path, page: str) -> tuple[set[str], list[str]]:
    """Open ``page`` in headless Chromium, offline; (ids of the SVG nodes drawn, label texts)."""
    chromium = need_binary("chromium", "chromium")
    path = tmp_path / "page.html"
    path.write_text(page, encoding="utf-8")
    proc = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert "<svg" in dom, "mermaid drew nothing"
    svg = dom[dom.index("<svg") :]
    drawn = set(re.findall(r'<g class="node\b[^>]*\bid="flowchart-(.+?)-\d+"', svg))
    texts = [
        html.unescape(re.sub(r"<br\s*/?>", "\n", re.sub(r"<(?!br)[^>]+>", "", m[2])))
        for m in _LABEL.finditer(svg)
    ]
    return drawn, [t for t in texts if t.strip()]


def test_html_page_renders_offline_in_chromium(
    inv: Inventory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["render", "diagram", "--config", str(EXAMPLE), "--kind", "updates", "--format", "html"]
    assert run([*argv, "--no-live"]) == 0
    page = capsys.readouterr().out
    drawn, texts = rendered(tmp_path, page)
    assert drawn == set(nodes(diagrams.updates(inv)))
    # The calendar specs are shown as written: no markdown emphasis ate the asterisks.
    assert "nixmox-backup.timer\n*-*-* 02:30:00" in texts
    assert "nixmox-backup-verify.timer\nSun *-*-* 06:00:00" in texts
    assert "restore newest into VMID 9900-9999 on vm-disks" in texts


def test_unusual_labels_render_literally_in_chromium(tmp_path: Path) -> None:
    comment = 'say "hi" *bold* _it_ ~~x~~ [a](b) <b>x</b> `md` C:\\dir #1'
    inv = parse_inventory(
        f"""
[[nodes]]
name = "pve1"
[[bridges]]
name = "vmbr0"
comment = '{comment}'
[[bridges]]
name = "vmbr1"
comment = "- 1. # not a list"
[[guests]]
name = "g"
vmid = 100
kind = "vm"
node = "pve1"
net = [{{ bridge = "vmbr0" }}, {{ bridge = "vmbr1" }}]
"""
    )
    text = diagrams.network(inv)
    drawn, texts = rendered(tmp_path, diagrams.html(text, "t", diagrams.mermaid_script()))
    assert drawn == set(nodes(text))
    assert f"vmbr0\n{comment}" in texts
    assert "vmbr1\n- 1. # not a list" in texts


# -- live state --------------------------------------------------------------------


def test_guest_facts_reads_bridges_and_disks_not_cdroms() -> None:
    facts = guest_facts(
        GuestRow(101, "qemu", "pve1", "nixos-vm", "running"),
        {
            "net1": "virtio=BC:24:11:00:00:66,bridge=vmbr2",
            "net0": "virtio=BC:24:11:00:00:65,bridge=vmbr0",
            "scsi0": "vm-disks:vm-101-disk-0,size=32G",
            "ide2": "local:iso/nixos.iso,media=cdrom",
            "efidisk0": "vm-disks:vm-101-disk-1,efitype=4m,size=1M",
            "memory": "8192",
        },
    )
    assert facts.bridges == ("vmbr0", "vmbr2")
    assert facts.volumes == (("efidisk0", "vm-disks", "1M"), ("scsi0", "vm-disks", "32G"))


def test_live_network_shows_present_bridges_and_links(
    lab_env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = lab_env
    lab.pve.add_declared_guests()
    # The lab starts with no bridges (network apply creates them): vmbr0 is there, vmbr1/2 not.
    lab.pve.net_applied["vmbr0"] = {
        "type": "bridge",
        "method": "static",
        "cidr": "192.0.2.2/24",
        "bridge_ports": "enp5s0",
        "autostart": 1,
        "active": 1,
    }
    assert run(["--config", str(EXAMPLE), "render", "diagram", "--kind", "network"]) == 0
    text = capsys.readouterr().out
    assert f"%% from the inventory and the live state of {lab.url}" in text
    labels = nodes(text)
    found = edges(text)
    assert ("node_pve1", "-->", "enp5s0", "bridge_pve1_vmbr0") in found
    assert ("node_pve1", "-.->", "", "bridge_pve1_vmbr2") in found
    assert "declared, not present" in labels["bridge_pve1_vmbr2"]
    assert ("bridge_pve1_vmbr0", "-->", "", "guest_100") in found
    assert ("bridge_pve1_vmbr0", "-->", "", "guest_101") in found
    assert labels["guest_100"] == "nixos-lxc<br/>LXC 100<br/>running"
    # The template VM 9000 is no guest of the lab's diagram.
    assert "guest_9000" not in labels

    assert run(["--config", str(EXAMPLE), "render", "diagram", "--kind", "storage"]) == 0
    storage = capsys.readouterr().out
    assert ("storage_vm_2ddisks", "-->", "scsi0 32G", "guest_101") in edges(storage)
    assert ("dataset_rpool_2fdata_2fct", "-->", "", "storage_ct_2ddisks") in edges(storage)


def test_unreachable_api_draws_from_the_inventory_and_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "nixmox.toml"
    config.write_text(
        EXAMPLE.read_text(encoding="utf-8").replace(
            'ca_file = "/etc/nixmox/pve-root-ca.pem"\n', ""
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv("NIXMOX_PVE_URL", "https://127.0.0.1:9")
    monkeypatch.setenv("NIXMOX_PVE_TOKEN", "secret-value-123")
    argv = ["--config", str(config), "render", "diagram", "--kind", "updates", "--format", "html"]
    assert run(argv) == 0
    page = capsys.readouterr().out
    assert "%% drawn from the inventory alone: Proxmox API not usable" in page
    assert "secret-value-123" not in page
    assert page.startswith("<!doctype html>")


def test_docs_example_is_the_real_output(inv: Inventory) -> None:
    page = (ROOT / "docs/diagrams.md").read_text(encoding="utf-8")
    section = page.split("# Diagrams", 1)[1]
    block = section.split("```mermaid\n", 1)[1].split("```", 1)[0]

    def drop_comments(text: str) -> list[str]:
        # The comments say why there was no live state, which depends on the machine.
        return [line for line in text.splitlines() if not line.startswith("%%")]

    assert drop_comments(block) == drop_comments(diagrams.network(inv))


def test_a_verify_schedule_alone_draws_the_verify_timer() -> None:
    inv = parse_inventory(
        """
[[nodes]]
name = "pve1"
[backups]
storage = "local"
[schedules]
backup_verify = "Sun *-*-* 06:00:00"
"""
    )
    text = diagrams.updates(inv)
    assert nodes(text)["timer_backup_2dverify"] == (
        "nixmox-backup-verify.timer<br/>Sun *-*-* 06:00:00"
    )
    assert (
        "storage_local",
        "-->",
        "restore newest into VMID 9900-9999",
        "timer_backup_2dverify",
    ) in (edges(text))
