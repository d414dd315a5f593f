"""`nixmox update host` end to end: the lab's API (apt, tasks, quorum, migrations,
node reboots), real sshd test hosts with a recording `apt-get` stand-in, and the
root snapshot on real ZFS (zfs-fuse).

Each node of a test is its own sshd (:class:`StandInHost`) with its own /boot and
/run: the stand-in apt-get records its argv and DEBIAN_FRONTEND, can fail like
dpkg does, install a newer kernel image into /boot or leave
/run/reboot-required; the lab's package list follows what it did (the
``before_apt_read`` hook applies the offered upgrades once it ran). The running
kernel is this machine's own (/proc/sys/kernel/osrelease, read over SSH).
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nixmox.adapters.journal import Journal
from nixmox.adapters.proxmox.client import ApiError, Proxmox
from nixmox.adapters.proxmox.settings import connection
from nixmox.adapters.proxmox.tasks import TaskFailed, wait
from nixmox.adapters.runner import Runner
from nixmox.cli.main import run
from nixmox.core import log
from nixmox.core.progress import Lines
from nixmox.core.zones import zone
from nixmox.inventory.load import load_inventory
from nixmox.observe.history import summary_lines
from nixmox.updates.host.job import UPGRADE, HostUpdate, Timing
from tests.clock import FakeClock
from tests.lab.fixtures import HOST, point_at
from tests.lab.server import Lab
from tests.lab.serving import RunningLab, make_pki, serve_in_thread
from tests.peers.require import need_binary, need_root
from tests.peers.standin_host import StandInHost
from tests.peers.zfs import ZfsFuse

RUNNING = Path("/proc/sys/kernel/osrelease").read_text().strip()
NEWER = f"{int(RUNNING.split('.')[0]) + 1}.0.0-1-pve"  # newer than the running kernel
UPGRADES = [("pve-manager", "9.0.11"), ("proxmox-kernel-6.14", "6.14.11-1")]

# The recording stand-in for apt-get. One line per call: DEBIAN_FRONTEND, then
# argv, tab-separated. Then what apt-get.behaviour (sourced) says: EXIT (exit
# status, with dpkg's error line), KERNEL (a kernel image to install into
# /boot), REBOOT_REQUIRED (leave /run/reboot-required). Success leaves
# apt-get.done for the lab's package list to follow.
APT_GET = """#!/bin/sh
d={dir}
{{ printf '%s' "${{DEBIAN_FRONTEND-unset}}"; for a in "$@"; do printf '\\t%s' "$a"; done; \
printf '\\n'; }} >> "$d/apt-get.calls"
EXIT=0 KERNEL= REBOOT_REQUIRED=
[ -f "$d/apt-get.behaviour" ] && . "$d/apt-get.behaviour"
if [ "$EXIT" != 0 ]; then
  echo "E: Sub-process /usr/bin/dpkg returned an error code (1)" >&2
  exit "$EXIT"
fi
[ -n "$KERNEL" ] && : > "/boot/vmlinuz-$KERNEL"
[ -n "$REBOOT_REQUIRED" ] && echo pve-manager > /run/reboot-required.pkgs \
  && : > /run/reboot-required
echo "2 upgraded, 0 newly installed, 0 to remove and 0 not upgraded."
: > "$d/apt-get.done"
"""

GUESTS_A = """
[[guests]]
name = "web"
vmid = 100
kind = "lxc"
node = "pve-a"
onboot = true
rootfs = { storage = "local-zfs", size = "8G" }
[guests.reboot]
policy = "allowed"

[[guests]]
name = "db"
vmid = 101
kind = "vm"
node = "pve-a"
onboot = true
disks = [{ slot = "scsi0", storage = "local-zfs", size = "16G" }]
[guests.reboot]
policy = "never"

[[guests]]
name = "gaming"
vmid = 102
kind = "vm"
node = "pve-a"
disks = [{ slot = "scsi0", storage = "local-zfs", size = "64G" }]
hostpci = [{ device = "0000:01:00", pcie = true, x-vga = true }]
[guests.reboot]
policy = "allowed"
"""

# Every guest of GUESTS_A may stop (db's policy is never there).
STOPPABLE_A = GUESTS_A.replace('policy = "never"', 'policy = "allowed"')

GUESTS_B = """
[[guests]]
name = "mail"
vmid = 103
kind = "vm"
node = "pve-b"
onboot = true
disks = [{ slot = "scsi0", storage = "local-zfs", size = "16G" }]
"""


@contextmanager
def lab_from(inventory: Path, directory: Path, nodes: list[str]) -> Iterator[RunningLab]:
    """A lab seeded from ``inventory`` with every one of ``nodes`` in its cluster."""
    pve = Lab(inventory, host=HOST, port=0)
    pve.time_scale = 0
    for name in nodes[1:]:
        pve.add_node(name)
    running = serve_in_thread(pve, make_pki(directory, HOST))
    try:
        yield running
    finally:
        running.stop()


@dataclass
class Rig:
    """The lab, one test host per node, the ZFS pool with their root datasets."""

    lab: RunningLab
    hosts: dict[str, StandInHost]
    zfs: ZfsFuse
    pool: str
    config: Path
    state: Path

    @property
    def pve(self) -> Lab:
        return self.lab.pve

    def nixmox(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
        """``nixmox update host --json ARGS``: exit code and the parsed report."""
        code = run(["update", "host", "--json", "--config", str(self.config), *args])
        out = capsys.readouterr().out
        return code, json.loads(out)

    def text(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
        code = run(["update", "host", "--config", str(self.config), *args])
        return code, capsys.readouterr().out

    def calls(self, node: str) -> list[list[str]]:
        """The stand-in apt-get's calls on ``node``: [DEBIAN_FRONTEND, *argv] each."""
        path = self.host_dir(node) / "apt-get.calls"
        if not path.exists():
            return []
        return [line.split("\t") for line in path.read_text().splitlines()]

    def behave(self, node: str, **values: str | int) -> None:
        """What the stand-in apt-get does next on ``node`` (EXIT, KERNEL, REBOOT_REQUIRED)."""
        text = "".join(f"{k}={v}\n" for k, v in values.items())
        (self.host_dir(node) / "apt-get.behaviour").write_text(text)

    def host_dir(self, node: str) -> Path:
        tmp = self.hosts[node].tmp
        assert tmp is not None
        return tmp

    def root(self, node: str) -> str:
        return f"{self.pool}/ROOT/{node}"

    def snapshots(self, node: str) -> list[str]:
        out = self.zfs.zfs("list", "-H", "-o", "name", "-t", "snapshot", "-r", self.root(node))
        return [line.split("@", 1)[1] for line in out.stdout.split()]

    def runs(self) -> list[Any]:
        return Journal(self.state).runs("update host")

    def api(self) -> Proxmox:
        return Proxmox(connection(load_inventory(self.config).proxmox))

    def host_update(self, hostname: str, **options: Any) -> tuple[HostUpdate, list[Any]]:
        """The rollout job over this rig's inventory as run on ``hostname``, and its nodes."""
        inv = load_inventory(self.config)
        api, runner = self.api(), Runner()
        update = HostUpdate(inv, api, runner, zone(inv.timezone), hostname=hostname, **options)
        return update, list(inv.nodes)


def inventory_text(
    zfs_command: str,
    pool: str,
    nodes: list[str],
    reboot: str,
    window: str | None,
    guests: str,
) -> str:
    parts = ['timezone = "Europe/Vienna"\n', f"[zfs]\ncommand = [{json.dumps(zfs_command)}]\n"]
    for name in nodes:
        parts.append(
            "[[nodes]]\n"
            f'name = "{name}"\naddress = "{name}"\n'
            f'root_dataset = "{pool}/ROOT/{name}"\nreboot = "{reboot}"\n'
            + (f'reboot_window = "{window}"\n' if window else "")
        )
    parts.append(
        '[[storages]]\nstorage = "local-zfs"\ntype = "zfspool"\ndataset = "rpool/data"\n'
        'content = ["images", "rootdir"]\n'
    )
    return "\n".join(parts) + guests


@pytest.fixture
def make_rig(
    zfs: ZfsFuse,
    zfs_pool: str,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., Rig]]:
    """Build a rig: ``make_rig(nodes=[...], reboot=..., window=..., guests=TOML)``."""
    need_root("the test hosts (sshd in a mount namespace)")
    sshd = need_binary("sshd", "openssh-server")
    need_binary("ssh", "openssh-client")
    keygen = need_binary("ssh-keygen", "openssh-client")
    unshare = need_binary("unshare", "util-linux")
    stack = ExitStack()

    def make(
        nodes: tuple[str, ...] = ("pve-a",),
        reboot: str = "allowed",
        window: str | None = None,
        guests: str = "",
    ) -> Rig:
        zfs.zfs("create", f"{zfs_pool}/ROOT")
        hosts = {}
        for name in nodes:
            zfs.zfs("create", f"{zfs_pool}/ROOT/{name}")
            host = stack.enter_context(
                StandInHost(name, sshd=sshd, ssh_keygen=keygen, unshare=unshare, multiplex=True)
            )
            host.stand_in("apt-get", APT_GET.format(dir=host.tmp))
            (host.boot_dir / f"vmlinuz-{RUNNING}").write_text("")
            hosts[name] = host
        ssh_config = tmp_path / "ssh_config"
        ssh_config.write_text("".join(h.ssh_config.read_text() for h in hosts.values()))
        config = tmp_path / "nixmox.toml"
        config.write_text(
            inventory_text(str(zfs.bin_dir / "zfs"), zfs_pool, list(nodes), reboot, window, guests)
        )
        lab = stack.enter_context(lab_from(config, tmp_path_factory.mktemp("pki"), list(nodes)))
        lab.pve.add_declared_guests()
        lab.pve.quorum_follows_nodes = True  # two nodes: one rebooting costs the cluster quorum

        def follow_apt_get(node: str) -> None:
            done = hosts[node].tmp / "apt-get.done"  # type: ignore[operator]
            if done.exists():
                done.unlink()
                lab.pve.apply_upgrades(node)

        lab.pve.before_apt_read = follow_apt_get
        # A rebooted node comes up on the newest kernel in its /boot.
        lab.pve.after_reboot = lambda node: hosts[node].boot_newest() and None
        state = tmp_path / "state"
        point_at(lab, monkeypatch, state)
        monkeypatch.setenv("NIXMOX_SSH_CONFIG", str(ssh_config))
        return Rig(lab, hosts, zfs, zfs_pool, config, state)

    yield make
    stack.close()


def dist_upgrade_call() -> list[str]:
    return ["noninteractive", *UPGRADE[1:]]


# -- the lab ----------------------------------------------------------------------


def test_lab_migrates_vms_but_not_with_local_devices(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(nodes=("pve-a", "pve-b"), guests=GUESTS_A)
    api = rig.api()
    pve = rig.pve
    pve.vm(102).status = "running"
    check = api.get("/nodes/pve-a/qemu/102/migrate")
    assert check["local_resources"] == ["hostpci0"] and check["allowed_nodes"] == ["pve-b"]
    with pytest.raises(TaskFailed, match="can't migrate VM which uses local devices: hostpci0"):
        wait(api, api.post("/nodes/pve-a/qemu/102/migrate", target="pve-b", online=1))
    with pytest.raises(ApiError, match="can't migrate running VM without --online"):
        api.post("/nodes/pve-a/qemu/101/migrate", target="pve-b")
    with pytest.raises(TaskFailed, match="with-local-disks"):
        wait(api, api.post("/nodes/pve-a/qemu/101/migrate", target="pve-b", online=1))
    upid = api.post(
        "/nodes/pve-a/qemu/101/migrate", target="pve-b", online=1, **{"with-local-disks": 1}
    )
    wait(api, upid)
    assert pve.vm(101).node == "pve-b" and pve.vm(101).status == "running"
    assert pve.host_events == [("migrate", 101, "pve-a", "pve-b")]


def test_lab_reboot_takes_the_node_and_quorum_away_for_a_while(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(nodes=("pve-a", "pve-b"), guests=GUESTS_A + GUESTS_B)
    api = rig.api()
    rig.pve.reboot_wall_secs = 0.5
    before = api.get("/nodes/pve-a/status")["uptime"]
    assert api.post("/nodes/pve-a/status", command="reboot") is None
    status = api.get("/cluster/status")
    assert status[0]["quorate"] == 0  # one of two votes
    with pytest.raises(ApiError, match="595"):
        api.request("GET", "/nodes/pve-a/status")
    assert rig.pve.vm(101).status == "stopped" and rig.pve.ct(100).status == "stopped"
    time.sleep(0.8)
    assert api.get("/cluster/status")[0]["quorate"] == 1
    assert api.get("/nodes/pve-a/status")["uptime"] < before
    # PVE starts the onboot guests again; the others stay stopped.
    assert rig.pve.vm(101).status == "running" and rig.pve.ct(100).status == "running"
    assert rig.pve.host_events == [
        ("reboot", "pve-a"),
        ("stopped", 101),
        ("stopped", 100),
        ("online", "pve-a"),
        ("onboot", 101),
        ("onboot", 100),
    ]


def test_lab_cluster_tasks_show_running_ones(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(nodes=("pve-a",))
    api = rig.api()
    upid = rig.pve.hold_task("pve-a", "vzdump", 100)
    [row] = [t for t in api.get("/cluster/tasks") if t["upid"] == upid]
    assert "status" not in row and "endtime" not in row
    rig.pve.end_task(upid)
    [row] = [t for t in api.get("/cluster/tasks") if t["upid"] == upid]
    assert row["status"] == "OK" and row["endtime"]


# -- one node ----------------------------------------------------------------------


def test_upgrade_over_ssh_after_apt_update_and_a_root_snapshot(
    make_rig: Callable[..., Rig], capsys: pytest.CaptureFixture[str]
) -> None:
    rig = make_rig(guests=GUESTS_A)
    rig.pve.set_upgrades(UPGRADES)
    code, text = rig.text(capsys)
    assert code == 0, text
    # The list of upgrades, shown before the table.
    assert "pve-a: 2 upgrades:" in text
    assert "  pve-manager 9.0.10 -> 9.0.11" in text
    assert "  proxmox-kernel-6.14 6.14.8-2 -> 6.14.11-1" in text
    assert rig.pve.apt_refreshes == 1  # the apt update task ran, through the API
    # The upgrade ran on the host over SSH, non-interactively, keeping config files.
    assert rig.calls("pve-a") == [dist_upgrade_call()]
    [snapshot] = rig.snapshots("pve-a")
    assert snapshot.startswith("nixmox_update_")
    assert rig.pve.installed_packages["pve-manager"] == "9.0.11"
    [journaled] = rig.runs()
    assert journaled.result == "ok"
    [row] = journaled.summary["guests"]
    assert row["guest"] == "pve-a" and row["vmid"] is None and row["result"] == "ok"
    assert row["snapshot"] == snapshot and row["pending"] == 0
    assert row["message"] == "2 packages upgraded; no reboot needed"
    assert "upgrade pve-manager 9.0.10 -> 9.0.11" in row["steps"]
    assert rig.pve.host_events == []  # no reboot: the stand-in installed no kernel


def test_nothing_to_upgrade_means_no_snapshot(
    make_rig: Callable[..., Rig], capsys: pytest.CaptureFixture[str]
) -> None:
    rig = make_rig()
    code, report = rig.nixmox(capsys)
    assert code == 0
    [row] = report["guests"]
    assert row["result"] == "unchanged" and row["message"] == "up to date; no reboot needed"
    assert rig.snapshots("pve-a") == [] and rig.calls("pve-a") == []
    assert rig.pve.apt_refreshes == 1


def test_policy_never_holds_the_reboot_and_exits_0(
    make_rig: Callable[..., Rig], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rig = make_rig(reboot="never", guests=GUESTS_A)
    rig.pve.set_upgrades(UPGRADES)
    rig.behave("pve-a", KERNEL=NEWER)
    code, report = rig.nixmox(capsys)
    assert code == 0
    [row] = report["guests"]
    assert row["result"] == "held" and row["pending"] == 1
    assert row["message"] == (
        f"2 packages upgraded; reboot pending (running kernel {RUNNING}, newest installed "
        f"{NEWER}), held by policy: reboot = never"
    )
    assert report["pending"] == {"pve-a": 1}
    assert rig.pve.host_events == []
    # What status and the metrics read: the held reboot is pending, the update succeeded.
    metrics = (tmp_path / "nixmox.prom").read_text()
    assert 'nixmox_pending_updates{target="pve-a"} 1.0' in metrics
    assert 'nixmox_guest_update_last_success{id="node/pve-a",name="pve-a"} 1.0' in metrics
    assert summary_lines(rig.runs()[0]) == ["0 nodes updated, 1 held"]
    # The next run has nothing to install, but the reboot is still pending.
    code, report = rig.nixmox(capsys)
    assert code == 0 and report["guests"][0]["result"] == "held"
    assert len(rig.snapshots("pve-a")) == 1  # no upgrade: no new snapshot


def test_reboot_window_outside_holds_inside_reboots(
    make_rig: Callable[..., Rig], capsys: pytest.CaptureFixture[str]
) -> None:
    # Windows that hold whatever the clock says: one in 2001, and every second.
    rig = make_rig(reboot="window", window="2001-01-01 04:00", guests=STOPPABLE_A)
    rig.pve.set_upgrades(UPGRADES)
    rig.behave("pve-a", REBOOT_REQUIRED=1)
    code, report = rig.nixmox(capsys)
    assert code == 0
    [row] = report["guests"]
    assert row["result"] == "held"
    assert row["message"].endswith(
        "reboot pending (/run/reboot-required exists (by pve-manager)), held by policy: "
        "outside the reboot window 2001-01-01 04:00"
    )
    assert rig.pve.host_events == []

    rig.config.write_text(rig.config.read_text().replace("2001-01-01 04:00", "*-*-* *:*:*"))
    code, report = rig.nixmox(capsys)
    assert code == 0, report
    [row] = report["guests"]
    assert row["result"] == "ok", row
    # One node: no other node to move to, so the guests that may stop are shut down
    # cleanly, the node reboots, and what nixmox stopped starts again.
    # Both are onboot guests: PVE started them already, so nixmox had nothing to start.
    assert rig.pve.host_events == [
        ("shutdown", 100),
        ("shutdown", 101),
        ("reboot", "pve-a"),
        ("online", "pve-a"),
        ("onboot", 101),
        ("onboot", 100),
    ]
    assert rig.pve.ct(100).status == "running" and rig.pve.vm(101).status == "running"


def test_a_reboot_that_comes_back_on_the_old_kernel_is_reported(
    make_rig: Callable[..., Rig], capsys: pytest.CaptureFixture[str]
) -> None:
    rig = make_rig(reboot="allowed", guests=STOPPABLE_A)
    rig.pve.set_upgrades(UPGRADES)
    rig.behave("pve-a", KERNEL=NEWER)
    rig.pve.after_reboot = None  # the boot loader still starts the old kernel
    code, report = rig.nixmox(capsys)
    assert code == 0, report
    [row] = report["guests"]
    assert ("reboot", "pve-a") in rig.pve.host_events
    assert row["result"] == "ok" and row["pending"] == 1
    assert row["message"].endswith(
        f"but it still runs kernel {RUNNING}, not {NEWER}: check the boot loader "
        "(`proxmox-boot-tool status`, `proxmox-boot-tool kernel list`)"
    )


def test_single_node_guest_that_may_not_stop_holds_the_reboot(
    make_rig: Callable[..., Rig], capsys: pytest.CaptureFixture[str]
) -> None:
    rig = make_rig(guests=GUESTS_A)
    rig.pve.set_upgrades(UPGRADES)
    rig.behave("pve-a", KERNEL=NEWER)
    code, report = rig.nixmox(capsys)
    assert code == 0
    [row] = report["guests"]
    assert row["result"] == "held" and row["pending"] == 1
    assert row["message"].endswith(
        "held: VM 101 (db) no other node to move it to, and its reboot policy never forbids "
        "stopping it"
    )
    assert rig.pve.host_events == []  # nothing stopped, nothing rebooted


def test_dry_run_changes_nothing(
    make_rig: Callable[..., Rig], capsys: pytest.CaptureFixture[str]
) -> None:
    rig = make_rig(guests=STOPPABLE_A)
    rig.pve.set_upgrades(UPGRADES, cached=True)  # as pve-daily-update left it
    code, report = rig.nixmox(capsys, "--dry-run")
    assert code == 0
    assert report["dry_run"] is True
    [row] = report["guests"]
    assert row["result"] == "dry-run"
    assert row["message"] == (
        f"would snapshot {rig.root('pve-a')} and upgrade 2 packages; would reboot "
        "(kernel upgrade: proxmox-kernel-6.14), shut down lxc 100 (no other node to move "
        "it to), shut down qemu 101 (no other node to move it to)"
    )
    assert rig.pve.apt_refreshes == 0  # not even the package lists
    assert rig.calls("pve-a") == [] and rig.snapshots("pve-a") == []
    assert rig.pve.host_events == [] and rig.runs() == []
    assert rig.pve.installed_packages["pve-manager"] == "9.0.10"


def test_dry_run_of_an_unreachable_node_still_shows_the_plan(
    make_rig: Callable[..., Rig],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    rig = make_rig(guests=STOPPABLE_A)
    rig.pve.set_upgrades(UPGRADES, cached=True)
    closed = tmp_path / "closed_ssh_config"  # the node's ssh answers nowhere
    closed.write_text("Host *\n  HostName 127.0.0.1\n  Port 9\n  BatchMode yes\n")
    monkeypatch.setenv("NIXMOX_SSH_CONFIG", str(closed))
    code, report = rig.nixmox(capsys, "--dry-run")
    assert code == 0
    [row] = report["guests"]
    assert row["result"] == "dry-run"
    assert row["message"].startswith(f"would snapshot {rig.root('pve-a')} and upgrade 2 packages")
    assert "cannot read the node to check for a reboot" in row["message"]
    assert "Connection refused" in row["message"]
    assert rig.calls("pve-a") == [] and rig.snapshots("pve-a") == []


def test_preflight_no_quorum_touches_nothing(
    make_rig: Callable[..., Rig], capsys: pytest.CaptureFixture[str]
) -> None:
    rig = make_rig(nodes=("pve-a", "pve-b"))
    rig.pve.set_upgrades(UPGRADES)
    rig.pve.lose_quorum()
    code, report = rig.nixmox(capsys)
    assert code == 1
    for row in report["guests"]:
        assert row["result"] == "failed"
        assert row["message"] == (
            "preflight: the cluster has no quorum (2 of 2 nodes online); nothing changed"
        )
    assert rig.pve.apt_refreshes == 0
    assert rig.calls("pve-a") == rig.calls("pve-b") == []
    assert rig.snapshots("pve-a") == rig.snapshots("pve-b") == []
    assert rig.runs()[0].result == "failed"


def test_preflight_running_vzdump_leaves_that_node_alone(
    make_rig: Callable[..., Rig], capsys: pytest.CaptureFixture[str]
) -> None:
    rig = make_rig(nodes=("pve-a", "pve-b"))
    rig.pve.set_upgrades(UPGRADES)
    upid = rig.pve.hold_task("pve-a", "vzdump", 100)
    code, report = rig.nixmox(capsys)
    assert code == 1
    a, b = report["guests"]
    assert a["guest"] == "pve-a" and a["result"] == "failed"
    assert a["message"] == (
        f"preflight: a backup (vzdump) is running on pve-a: {upid}; nothing changed"
    )
    assert rig.calls("pve-a") == [] and rig.snapshots("pve-a") == []
    # Nothing changed on pve-a, so pve-b still had its turn.
    assert b["result"] == "ok" and rig.calls("pve-b") == [dist_upgrade_call()]
    assert summary_lines(rig.runs()[0]) == [
        "1 node updated",
        f"1 failed: pve-a: preflight: a backup (vzdump) is running on pve-a: {upid}; "
        "nothing changed",
    ]


def test_preflight_migration_in_progress(
    make_rig: Callable[..., Rig], capsys: pytest.CaptureFixture[str]
) -> None:
    rig = make_rig(nodes=("pve-a",))
    rig.pve.hold_task("pve-a", "qmigrate", 101)
    code, report = rig.nixmox(capsys)
    assert code == 1
    assert report["guests"][0]["message"] == (
        "preflight: a migration is running on pve-a: qmigrate of 101; nothing changed"
    )


def test_failed_upgrade_stops_the_rollout_and_keeps_the_snapshot(
    make_rig: Callable[..., Rig], capsys: pytest.CaptureFixture[str]
) -> None:
    rig = make_rig(nodes=("pve-a", "pve-b"))
    rig.pve.set_upgrades(UPGRADES)
    rig.behave("pve-a", EXIT=100)
    code, report = rig.nixmox(capsys)
    assert code == 1
    a, b = report["guests"]
    [snapshot] = rig.snapshots("pve-a")
    assert a["result"] == "failed" and a["snapshot"] == snapshot and not a["rolled_back"]
    message = a["message"]
    assert message.startswith(
        "apt-get dist-upgrade failed: `apt-get` exited with 100: E: Sub-process "
        "/usr/bin/dpkg returned an error code (1). "
        f"The snapshot {rig.root('pve-a')}@{snapshot} is kept; nixmox does not roll back a "
        "root file system itself."
    )
    assert f"zpool import -f -R /mnt {rig.pool}" in message
    assert f"zfs rollback -r {rig.root('pve-a')}@{snapshot}" in message
    assert "proxmox-boot-tool refresh" in message
    assert b == {**b, "result": "skipped", "message": "not started: the rollout stopped at pve-a"}
    assert rig.calls("pve-b") == [] and rig.snapshots("pve-b") == []
    assert rig.pve.host_events == []
    assert rig.runs()[0].result == "failed"


# -- a cluster -------------------------------------------------------------------------


def test_two_node_rollout_moves_guests_away_and_back_one_node_at_a_time(
    make_rig: Callable[..., Rig], capsys: pytest.CaptureFixture[str]
) -> None:
    rig = make_rig(nodes=("pve-a", "pve-b"), guests=GUESTS_A + GUESTS_B)
    pve = rig.pve
    pve.vm(102).status = "running"  # the gaming VM (not onboot) runs now
    pve.set_upgrades(UPGRADES)
    for node in ("pve-a", "pve-b"):
        rig.behave(node, KERNEL=NEWER)
    code, report = rig.nixmox(capsys)
    assert code == 0, report
    assert pve.host_events == [
        # pve-a: the container restarts onto pve-b, the VM migrates online, the
        # passthrough VM cannot migrate and its policy lets it shut down.
        ("migrate", 100, "pve-a", "pve-b"),
        ("migrate", 101, "pve-a", "pve-b"),
        ("shutdown", 102),
        ("reboot", "pve-a"),
        ("online", "pve-a"),
        ("migrate", 100, "pve-b", "pve-a"),
        ("migrate", 101, "pve-b", "pve-a"),
        ("start", 102),
        # then pve-b, once pve-a is back with quorum and its guests are home.
        ("migrate", 103, "pve-b", "pve-a"),
        ("reboot", "pve-b"),
        ("online", "pve-b"),
        ("migrate", 103, "pve-a", "pve-b"),
    ]
    where = {vmid: (pve.guest(vmid) or pve.ct(vmid)) for vmid in (100, 101, 102, 103)}
    assert {v: (g.node, g.status) for v, g in where.items()} == {
        100: ("pve-a", "running"),
        101: ("pve-a", "running"),
        102: ("pve-a", "running"),
        103: ("pve-b", "running"),
    }
    a, b = report["guests"]
    assert a["result"] == b["result"] == "ok"
    assert a["message"] == (
        f"2 packages upgraded; rebooted (running kernel {RUNNING}, newest installed "
        f"{NEWER}); moved away and back: 100, 101; shut down and started again: 102"
    )
    assert rig.calls("pve-a") == rig.calls("pve-b") == [dist_upgrade_call()]
    assert len(rig.snapshots("pve-a")) == len(rig.snapshots("pve-b")) == 1


def test_cluster_reboot_held_by_a_guest_that_may_not_stop_moves_nothing(
    make_rig: Callable[..., Rig], capsys: pytest.CaptureFixture[str]
) -> None:
    # web, the container, comes first: its policy now forbids the restart a migration is.
    guests = (GUESTS_A + GUESTS_B).replace('policy = "allowed"', 'policy = "never"', 1)
    rig = make_rig(nodes=("pve-a", "pve-b"), guests=guests)
    rig.pve.set_upgrades(UPGRADES, node="pve-a")
    rig.behave("pve-a", KERNEL=NEWER)
    code, report = rig.nixmox(capsys, "--node", "pve-a")
    assert code == 0
    [row] = report["guests"]
    assert row["result"] == "held"
    assert row["message"].endswith(
        "held: CT 100 (web) migrating a container restarts it, and its reboot policy never "
        "forbids stopping it"
    )
    assert rig.pve.host_events == []
    assert rig.calls("pve-b") == []  # --node: only pve-a


def test_failed_migration_moves_back_what_moved_and_does_not_reboot(
    make_rig: Callable[..., Rig], capsys: pytest.CaptureFixture[str]
) -> None:
    rig = make_rig(nodes=("pve-a", "pve-b"), guests=GUESTS_A + GUESTS_B)
    rig.pve.set_upgrades(UPGRADES)
    rig.behave("pve-a", KERNEL=NEWER)
    rig.pve.fail("POST", "/nodes/pve-a/qemu/101/migrate", 500, "migration aborted")
    code, report = rig.nixmox(capsys)
    assert code == 1
    a, b = report["guests"]
    assert a["result"] == "failed"
    assert a["message"].startswith(
        "moving the guests away failed (POST /nodes/pve-a/qemu/101/migrate: HTTP 500: "
        "migration aborted); not rebooted; the snapshot "
    )
    assert b["result"] == "skipped"
    # The container went and came back; nothing rebooted.
    assert rig.pve.host_events == [
        ("migrate", 100, "pve-a", "pve-b"),
        ("migrate", 100, "pve-b", "pve-a"),
    ]


def test_node_that_does_not_come_back_stops_the_rollout(make_rig: Callable[..., Rig]) -> None:
    log.setup(0)
    rig = make_rig(nodes=("pve-a", "pve-b"), guests=GUESTS_A + GUESTS_B)
    rig.pve.set_upgrades(UPGRADES)
    rig.behave("pve-a", KERNEL=NEWER)
    rig.pve.reboot_wall_secs = 60.0  # longer than the test runs
    clock, out = FakeClock(), io.StringIO()
    update, nodes = rig.host_update("elsewhere", clock=clock, progress=Lines(out, clock))
    a, b = update.run(nodes)
    assert a.result == "failed" and b.result == "skipped"
    # Told as it went: the node's start, its steps when they happened, the reboot wait
    # every 10 s without news, and how each node ended.
    said = [line.split(" ", 2)[2] for line in out.getvalue().splitlines()]
    assert said[0] == "updating pve-a"
    assert said.index("pve-a: preflight passed") < said.index(
        "pve-a: apt-get dist-upgrade finished"
    )
    # What is about to take a while is said before it starts, not only when done.
    assert said.index("pve-a: apt-get dist-upgrade on root@pve-a") < said.index(
        "pve-a: apt-get dist-upgrade finished"
    )
    assert said.index("pve-a -> pve-b: migrating qemu 101") < said.index(
        "pve-a: migrated qemu 101 to pve-b"
    )
    assert said.index("pve-a: rebooting") < said.index("pve-a: reboot requested")
    stills = [line for line in said if line.startswith("Still updating pve-a... [")]
    assert len(stills) >= Timing().reboot // 10 - 2, said
    assert said[-2].startswith("pve-a: failed: node pve-a did not come back with quorum")
    assert said[-1] == "pve-b: skipped: not started: the rollout stopped at pve-a"
    # Polled with growing pauses up to poll_max, for the whole reboot timeout (900 s).
    assert clock.slept[0] == 0.25 and max(clock.slept) == Timing().poll_max
    assert Timing().reboot <= sum(clock.slept) < Timing().reboot + Timing().poll_max
    assert a.message.startswith(
        "node pve-a did not come back with quorum within 900 s; its guests stay where they "
        "went: 100 on pve-b, 101 on pve-b. The snapshot "
    )
    assert "zfs rollback -r" in a.message
    assert rig.pve.host_events == [
        ("migrate", 100, "pve-a", "pve-b"),
        ("migrate", 101, "pve-a", "pve-b"),
        ("reboot", "pve-a"),
    ]


# -- nixmox on the node itself ------------------------------------------------------


def local_update(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[HostUpdate, list[Any]]:
    """nixmox on pve-a itself, with an upgrade that installs a newer kernel."""
    # nixmox runs on pve-a: the same stand-in, first on this process's PATH.
    monkeypatch.setenv("PATH", f"{rig.hosts['pve-a'].bin_dir}{os.pathsep}{os.environ['PATH']}")
    root = tmp_path / "host"
    (root / "proc/sys/kernel").mkdir(parents=True)
    (root / "proc/sys/kernel/osrelease").write_text("6.8.12-4-pve\n")
    (root / "boot").mkdir()
    (root / "boot/vmlinuz-6.8.12-4-pve").write_text("")

    def kernel_installed(node: str) -> None:
        # Here the stand-in's /boot would be this machine's own: the kernel the
        # upgrade installed goes into the host tree nixmox reads instead.
        done = rig.host_dir("pve-a") / "apt-get.done"
        if done.exists():
            done.unlink()
            (root / "boot/vmlinuz-6.8.12-10-pve").write_text("")
            rig.pve.apply_upgrades(node)

    rig.pve.before_apt_read = kernel_installed
    rig.pve.set_upgrades(UPGRADES)
    return rig.host_update("pve-a", timing=Timing(reboot=5), probe_root=str(root))


def test_local_node_upgrades_here_and_reboots_itself_after_the_report(
    make_rig: Callable[..., Rig],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log.setup(0)  # progress lines to this test's stderr (earlier runs bound theirs)
    rig = make_rig(guests=STOPPABLE_A)
    update, nodes = local_update(rig, tmp_path, monkeypatch)
    [row] = update.run(nodes)
    assert row.result == "ok" and update.self_reboot == "pve-a"
    assert row.message == (
        "2 packages upgraded; rebooting now (running kernel 6.8.12-4-pve, newest installed "
        "6.8.12-10-pve), right after this report"
    )
    assert rig.calls("pve-a") == [dist_upgrade_call()]
    assert len(rig.snapshots("pve-a")) == 1  # [zfs] command, run here
    assert rig.pve.host_events == []  # not yet: the report comes first
    update.reboot_self()
    assert rig.pve.host_events[0] == ("reboot", "pve-a")


# -- the command line -------------------------------------------------------------------


def test_unknown_node_and_an_inventory_without_nodes_are_config_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    example = str(Path(__file__).resolve().parent.parent / "examples" / "homelab.toml")
    assert run(["update", "host", "--node", "nope", "--config", example]) == 1
    assert capsys.readouterr().err == "nixmox: --node nope: no such node in the inventory\n"
    bare = tmp_path / "bare.toml"
    bare.write_text('timezone = "UTC"\n')
    assert run(["update", "host", "--config", str(bare)]) == 1
    assert "declares no [[nodes]]" in capsys.readouterr().err


# -- what a real PVE does that the lab once did not (issue 24) ---------------------------


def test_lab_refuses_live_migration_with_local_disks_while_snapshots_exist(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(nodes=("pve-a", "pve-b"), guests=GUESTS_A)
    api = rig.api()
    wait(api, api.post("/nodes/pve-a/qemu/101/snapshot", snapname="before"))
    with pytest.raises(TaskFailed, match="non-replicated snapshot exists"):
        wait(
            api,
            api.post(
                "/nodes/pve-a/qemu/101/migrate", target="pve-b", online=1, **{"with-local-disks": 1}
            ),
        )
    assert rig.pve.vm(101).node == "pve-a"


def test_lab_ha_requests_end_before_the_ha_manager_acts(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(nodes=("pve-a", "pve-b"), guests=GUESTS_A)
    api = rig.api()
    rig.pve.vm(101).ha_state = "started"
    upid = api.post("/nodes/pve-a/qemu/101/migrate", target="pve-b", online=1)
    assert ":hamigrate:" in upid
    wait(api, upid)
    assert rig.pve.vm(101).node == "pve-a"  # queued, not done
    time.sleep(rig.pve.ha_wall_secs + 0.3)
    assert rig.pve.vm(101).node == "pve-b"
    upid = api.post("/nodes/pve-b/qemu/101/status/shutdown")
    wait(api, upid)
    assert ":hastop:" in upid and rig.pve.vm(101).status == "running"
    time.sleep(rig.pve.ha_wall_secs + 0.3)
    assert rig.pve.vm(101).status == "stopped"


def test_ha_guests_are_really_away_before_the_node_reboots(
    make_rig: Callable[..., Rig], capsys: pytest.CaptureFixture[str]
) -> None:
    rig = make_rig(nodes=("pve-a", "pve-b"), guests=GUESTS_A + GUESTS_B)
    pve = rig.pve
    for vmid in (100, 101):
        (pve.guest(vmid) or pve.ct(vmid)).ha_state = "started"
    pve.set_upgrades(UPGRADES, node="pve-a")
    rig.behave("pve-a", KERNEL=NEWER)
    code, report = rig.nixmox(capsys, "--node", "pve-a")
    assert code == 0, report
    # Without waiting for the HA manager, the reboot took both guests down with pve-a.
    assert pve.host_events == [
        ("migrate", 100, "pve-a", "pve-b"),
        ("migrate", 101, "pve-a", "pve-b"),
        ("reboot", "pve-a"),
        ("online", "pve-a"),
        ("migrate", 100, "pve-b", "pve-a"),
        ("migrate", 101, "pve-b", "pve-a"),
    ]
    assert pve.ct(100).node == pve.vm(101).node == "pve-a"


def test_vm_with_local_disks_and_snapshots_is_shut_down_instead_of_migrated(
    make_rig: Callable[..., Rig], capsys: pytest.CaptureFixture[str]
) -> None:
    rig = make_rig(nodes=("pve-a", "pve-b"), guests=STOPPABLE_A + GUESTS_B)
    api = rig.api()
    wait(api, api.post("/nodes/pve-a/qemu/101/snapshot", snapname="kept"))
    rig.pve.set_upgrades(UPGRADES, node="pve-a")
    rig.behave("pve-a", KERNEL=NEWER)
    code, report = rig.nixmox(capsys, "--node", "pve-a")
    assert code == 0, report
    assert rig.pve.host_events == [
        ("migrate", 100, "pve-a", "pve-b"),
        ("shutdown", 101),
        ("reboot", "pve-a"),
        ("online", "pve-a"),
        ("onboot", 101),
        ("migrate", 100, "pve-b", "pve-a"),
    ]
    assert report["guests"][0]["message"].endswith(
        "moved away and back: 100; shut down and started again: 101"
    )


def test_a_backup_that_starts_after_the_preflight_holds_the_reboot(
    make_rig: Callable[..., Rig], capsys: pytest.CaptureFixture[str]
) -> None:
    rig = make_rig(guests=STOPPABLE_A)
    pve = rig.pve
    pve.set_upgrades(UPGRADES)
    rig.behave("pve-a", KERNEL=NEWER)
    follow = pve.before_apt_read
    started: list[str] = []

    def backup_job_starts(node: str) -> None:
        assert follow is not None
        follow(node)
        if (rig.host_dir(node) / "apt-get.calls").exists() and not started:
            started.append(pve.hold_task(node, "vzdump", ""))  # PVE's own backup job

    pve.before_apt_read = backup_job_starts
    code, report = rig.nixmox(capsys)
    assert code == 0, report
    [row] = report["guests"]
    assert row["result"] == "held"
    assert f"held: a backup (vzdump) is running on pve-a: {started[0]}" in row["message"]
    # The guests stopped for the reboot run again; the backup was not killed.
    assert ("reboot", "pve-a") not in pve.host_events
    assert pve.ct(100).status == pve.vm(101).status == "running"


def test_self_reboot_is_held_for_a_running_guest_without_onboot(
    make_rig: Callable[..., Rig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = make_rig(guests=STOPPABLE_A)
    rig.pve.vm(102).status = "running"  # the gaming VM, onboot off
    update, nodes = local_update(rig, tmp_path, monkeypatch)
    [row] = update.run(nodes)
    assert row.result == "held" and update.self_reboot is None
    assert row.message.endswith(
        "held: VM 102 (gaming) runs without onboot: the node's own boot would not start it "
        "again (stop it, or set onboot, first)"
    )
    assert rig.pve.host_events == []


def test_self_reboot_is_held_for_a_backup_started_after_the_report(
    make_rig: Callable[..., Rig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = make_rig(guests=STOPPABLE_A)
    update, nodes = local_update(rig, tmp_path, monkeypatch)
    [row] = update.run(nodes)
    assert row.result == "ok" and update.self_reboot == "pve-a"
    upid = rig.pve.hold_task("pve-a", "vzdump", "")
    held = update.reboot_self()
    assert held == (
        f"pve-a: reboot held after all: a backup (vzdump) is running on pve-a: {upid}; "
        "run `nixmox update host` again once it has finished"
    )
    assert rig.pve.host_events == []
