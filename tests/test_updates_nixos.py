"""`nixmox update nixos` end to end.

Against real peers: the lab (Proxmox snapshots, rollbacks, the guest agent's
exec API), a real sshd (the guest reached with the system ssh client), the real
nix 2.8 updating a local flake's lock, real git for the lock commit. Recording
stand-ins (see tests/peers/nixos_host.py) play the NixOS-only programs:
nixos-rebuild, switch-to-configuration, systemctl, systemd-run, nix-env, pct.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nixmox.adapters.journal import Journal
from nixmox.adapters.proxmox.client import Proxmox
from nixmox.adapters.proxmox.settings import connection
from nixmox.adapters.runner import Runner
from nixmox.cli import update_nixos as update_nixos_command
from nixmox.cli.main import run
from nixmox.core.errors import ConfigError
from nixmox.inventory.load import load_inventory
from nixmox.inventory.model import ProxmoxSettings
from nixmox.updates.guest_access import AgentAccess, PctAccess, open_access
from nixmox.updates.guest_snapshots import (
    GuestSnapshots,
    update_snapshot_name,
    update_snapshot_time,
)
from nixmox.updates.nixos.decisions import (
    NIX,
    READ_GENERATION,
    Generation,
    Health,
    deadman_argv,
    lock_argv,
    lock_digest,
    lock_unchanged,
    parse_generation,
    parse_nix_version,
    read_lock_script,
    reboot_needed,
    switch_argv,
    system_state,
    unit_stamp,
)
from nixmox.updates.nixos.job import POLL
from tests.clock import FakeClock
from tests.lab.fixtures import point_at
from tests.lab.server import Lab
from tests.lab.serving import RunningLab, make_pki, serve_in_thread
from tests.peers.nix import NixSandbox, write_stub_nixpkgs
from tests.peers.nixos_host import NixosGuestAgent, NixosHost
from tests.peers.require import need_binary, need_root

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = (ROOT / "examples" / "homelab.toml").read_text()
PROFILE = "/nix/var/nix/profiles/system"


# -- pure decisions ---------------------------------------------------------------


def test_lock_command_follows_the_nix_version() -> None:
    assert lock_argv((2, 8, 0), "/etc/nixos", ["nixpkgs", "home"]) == [
        *NIX, "flake", "lock", "/etc/nixos", "--update-input", "nixpkgs", "--update-input", "home",
    ]  # fmt: skip
    assert lock_argv((2, 19, 0), "/etc/nixos", ["nixpkgs"]) == [
        *NIX, "flake", "update", "nixpkgs", "--flake", "/etc/nixos",
    ]  # fmt: skip
    assert lock_argv((2, 24, 9), "/etc/nixos", []) == [
        *NIX,
        "flake",
        "update",
        "--flake",
        "/etc/nixos",
    ]
    assert lock_argv((2, 18, 1), "/etc/nixos", []) == [*NIX, "flake", "update", "/etc/nixos"]
    assert parse_nix_version("nix (Nix) 2.8.0\n") == (2, 8, 0)
    assert parse_nix_version("nix (Nix) 2.24\n") == (2, 24)
    assert parse_nix_version("sh: nix: not found") is None


@given(
    version=st.tuples(st.integers(2, 3), st.integers(0, 40), st.integers(0, 20)),
    inputs=st.lists(
        st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True).filter(
            lambda name: name not in ("nix", "flake", "lock", "update")
        ),
        unique=True,
    ),
)
def test_lock_command_names_the_flake_and_each_input_once(
    version: tuple[int, int, int], inputs: list[str]
) -> None:
    argv = lock_argv(version, "/etc/nixos", inputs)
    assert argv[: len(NIX)] == list(NIX) and argv.count("/etc/nixos") == 1
    assert all(argv.count(name) == 1 for name in inputs)
    old_syntax = "--update-input" in argv
    assert old_syntax == (bool(inputs) and version < (2, 19))
    if not inputs:  # the whole lock, in every version
        assert argv[len(NIX) : len(NIX) + 2] == ["flake", "update"]


def test_generation_reboot_and_health_verdicts() -> None:
    gen = parse_generation("system-41-link\n/nix/store/a-nixos\n/nix/store/b-nixos\n")
    assert gen == Generation(41, "/nix/store/a-nixos", "/nix/store/b-nixos")
    with pytest.raises(ValueError, match="does not point at a generation"):
        parse_generation("/nix/store/x-system\n")
    assert reboot_needed("kernel /a /a\ninitrd /b /c\nkernel-modules  \n") == ["initrd"]
    assert reboot_needed("kernel  \ninitrd  \nkernel-modules  \n") == []  # an LXC: no kernel
    assert [system_state(s) for s in ("running", "starting", "degraded", "maintenance")] == [
        "ok", "wait", "bad", "bad",
    ]  # fmt: skip
    assert Health().problems() == []
    sick = Health(state="degraded", failed_units=["nginx.service"], bad_urls=["x answered 503"])
    assert sick.problems() == [
        "system is degraded",
        "failed units: nginx.service",
        "http: x answered 503",
    ]
    argv = deadman_argv("nixmox-deadman-x", "5min", 41)
    # --collect: a fired (even failed) dead-man must not stay loaded, keeping the
    # system "degraded" and failing the health checks of every later update.
    assert argv[:4] == ["systemd-run", "--collect", "--on-active=5min", "--unit=nixmox-deadman-x"]
    assert "--switch-generation 41" in argv[-1] and "switch-to-configuration switch" in argv[-1]
    # Detached like nixos-rebuild's switch: it outlives the connection that started it.
    assert switch_argv("nixmox-switch-x", "/nix/store/a-nixos") == [
        "systemd-run", "--collect", "--no-ask-password", "--pipe", "--quiet",
        "--service-type=exec", "--unit=nixmox-switch-x", "--wait",
        "/nix/store/a-nixos/bin/switch-to-configuration", "switch",
    ]  # fmt: skip


def test_unit_names_differ_from_run_to_run() -> None:
    now = datetime(2026, 12, 4, 3, 30, tzinfo=UTC)
    assert unit_stamp(now, "a1b2c3") == "20261204033000-a1b2c3"
    assert unit_stamp(now, "a1b2c3") != unit_stamp(now, "d4e5f6")


def test_units_failed_before_the_update_do_not_count() -> None:
    before = ["broken-mount.mount"]
    same = Health(state="degraded", failed_units=["broken-mount.mount"], baseline_failed=before)
    assert same.problems() == []
    worse = Health(
        state="degraded",
        failed_units=["broken-mount.mount", "nginx.service"],
        baseline_failed=before,
    )
    assert worse.problems() == ["system is degraded", "failed units: nginx.service"]
    # Degraded with no failed unit listed, or another bad state: never excused.
    assert Health(state="degraded", baseline_failed=before).problems() == ["system is degraded"]
    assert Health(state="maintenance", failed_units=before, baseline_failed=before).problems() == [
        "system is maintenance"
    ]
    assert parse_generation("system-3-link\n/a\n/b\n1000\n").uid == "1000"


def test_transports_build_the_documented_command_lines() -> None:
    assert AgentAccess.argv(["nix", "--version"]) == ["/run/current-system/sw/bin/nix", "--version"]
    assert AgentAccess.argv("echo hi")[:2] == ["/run/current-system/sw/bin/sh", "-c"]
    assert AgentAccess.argv("echo hi")[2].endswith("echo hi")
    pct = PctAccess(Runner(), 100).argv(["nix", "--version"])
    assert pct[:6] == ["pct", "exec", "100", "--", "/bin/sh", "-c"]
    assert ". /etc/set-environment" in pct[6] and pct[6].endswith("exec nix --version")


# -- the fake guest, the flake, the inventory -------------------------------------


@pytest.fixture
def guest(nix_sandbox: NixSandbox) -> Iterator[NixosHost]:
    need_root("the fake NixOS guest (sshd in a mount namespace)")
    sshd = need_binary("sshd", "openssh-server")
    need_binary("unshare", "util-linux")
    # One shared ssh connection per test (dozens of commands); see tests/peers/sshd.py.
    with NixosHost(nix_sandbox, sshd=sshd, multiplex=True) as host:
        yield host


@pytest.fixture
def healthz() -> Iterator[str]:
    """A loopback HTTP server answering 200 on /healthz, 503 elsewhere."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 503)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/healthz"
    finally:
        server.shutdown()
        server.server_close()


class Flake:
    """A flake with one `path:` input (the stub nixpkgs), locked by the real nix."""

    def __init__(self, root: Path, nix: NixSandbox, *, git: bool = False) -> None:
        self.dir = root / "flake"
        self.stub = write_stub_nixpkgs(root / "stub-nixpkgs")
        self.nix = nix
        self.dir.mkdir()
        (self.dir / "flake.nix").write_text(
            "{\n"
            f'  inputs.nixpkgs.url = "path:{self.stub}";\n'
            "  outputs = { self, nixpkgs }: { nixosConfigurations = { }; };\n"
            "}\n"
        )
        if git:
            self.git("init", "-q")
            self.git("add", "flake.nix")
        nix.nix("flake", "lock", str(self.dir))
        if git:
            self.git("add", "flake.lock")
            self.git("commit", "-q", "-m", "initial")
        self.first = self.lock()

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(self.dir), *args],
            env=self.nix.env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def lock(self) -> str:
        return (self.dir / "flake.lock").read_text()

    def upstream_moves(self) -> None:
        """A new nixpkgs "release": the stub's content (so its narHash) changes."""
        text = (self.stub / "flake.nix").read_text()
        (self.stub / "flake.nix").write_text(text + "# a new release\n")


@pytest.fixture
def flake(tmp_path: Path, nix_sandbox: NixSandbox) -> Flake:
    return Flake(tmp_path, nix_sandbox)


def write_inventory(
    path: Path,
    update: str,
    *,
    health: str = "",
    node_address: str | None = None,
    guest: str = "nixos-lxc",
) -> Path:
    """examples/homelab.toml with ``guest``'s [guests.update] (and health) replaced."""
    start = EXAMPLE.index("[guests.update]", EXAMPLE.index(f'name = "{guest}"'))
    end = EXAMPLE.index("[guests.reboot]", start)
    text = EXAMPLE[:start] + update.strip() + "\n\n" + health.strip() + "\n\n" + EXAMPLE[end:]
    if node_address is not None:
        text = text.replace('address = "pve1.home.arpa"', f'address = "{node_address}"')
    path.write_text(text)
    return path


def ssh_update(host: NixosHost, flake: Flake, extra: str = "") -> str:
    return f"""
[guests.update]
method = "nixos"
ssh = "{host.host}"
flake = "{flake.dir}"
host = "nixos-lxc"
inputs = ["nixpkgs"]
{extra}
"""


def ssh_inventory(tmp_path: Path, host: NixosHost, flake: Flake, url: str) -> Path:
    """The example with nixos-lxc updated over ssh from ``flake``, health checked at ``url``."""
    return write_inventory(tmp_path / "inv.toml", ssh_update(host, flake), health=health(url))


def health(url: str, units: str = '["sshd.service"]') -> str:
    return f"""
[guests.update.health]
units = {units}
http = ["{url}"]
timeout = "5s"
"""


@pytest.fixture
def env(lab_env: RunningLab, guest: NixosHost, monkeypatch: pytest.MonkeyPatch) -> RunningLab:
    """The shared lab environment with the example's guests; ssh reaches the fake guest."""
    monkeypatch.setenv("NIXMOX_SSH_CONFIG", str(guest.ssh_config))
    lab_env.pve.add_declared_guests()
    return lab_env


@pytest.fixture
def config(tmp_path: Path, guest: NixosHost, flake: Flake, healthz: str) -> Path:
    """The example with nixos-lxc updated over ssh from the test's flake (:func:`ssh_inventory`)."""
    return ssh_inventory(tmp_path, guest, flake, healthz)


def update(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, Any]:
    code = run(["update", "nixos", "--json", "--config", str(config), *args])
    out = capsys.readouterr().out
    return code, json.loads(out)


def update_on(
    clock: FakeClock, capsys: pytest.CaptureFixture[str], config: Path, guest: str
) -> tuple[int, Any]:
    """:func:`update` of one guest with ``clock``: its waits pass at once."""
    code = update_nixos_command.run(
        config, [guest], dry_run=False, as_json=True, verbose=0, clock=clock
    )
    return code, json.loads(capsys.readouterr().out)


def update_lxc(
    capsys: pytest.CaptureFixture[str], config: Path, clock: FakeClock | None = None
) -> tuple[int, Any, Any]:
    """Updates nixos-lxc alone (on ``clock`` if given); the exit code, the JSON, its one row."""
    if clock is None:
        code, out = update(capsys, config, "--guest", "nixos-lxc")
    else:
        code, out = update_on(clock, capsys, config, "nixos-lxc")
    [row] = out["guests"]
    return code, out, row


# The guest's stand-ins for a new system that comes up degraded, nginx failed.
UNHEALTHY = {
    "state.new-system": "degraded\n",
    "failed.new-system": "nginx.service loaded failed failed nginx\n",
}


def new_release(flake: Flake, guest: NixosHost, script: dict[str, str] | None = None) -> None:
    """A new nixpkgs upstream, the guest's stand-ins scripted by ``script`` (file: content)."""
    flake.upstream_moves()
    for name, text in (script or {}).items():
        (guest.script / name).write_text(text)


def snapshots(lab: RunningLab, kind: str = "lxc", vmid: int = 100) -> GuestSnapshots:
    return GuestSnapshots(Proxmox(connection(ProxmoxSettings(), lab.env)), "pve1", kind, vmid)


def posts(lab: RunningLab, fragment: str) -> list[str]:
    return [path for method, path, _ in lab.pve.requests if method == "POST" and fragment in path]


# -- the scenarios of the issue ---------------------------------------------------


def test_lock_unchanged_builds_nothing_and_keeps_no_snapshot(
    env: RunningLab,
    guest: NixosHost,
    flake: Flake,
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _out, row = update_lxc(capsys, config)
    assert code == 0
    assert row["result"] == "unchanged" and row["snapshot"] is None
    assert guest.calls("nixos-rebuild") == [] and guest.calls("switch-to-configuration") == []
    # The nix-2.8 syntax for one input, run for real against the flake.
    assert any(
        f"flake lock {flake.dir} --update-input nixpkgs" in line for line in guest.calls("nix")
    )
    assert flake.lock() == flake.first
    # Taken before the lock was touched, deleted once nothing changed.
    assert posts(env, "/lxc/100/snapshot")
    assert snapshots(env).names() == []
    # Nothing to update is a good night for the metrics, not a failed update.
    prom = (tmp_path / "nixmox.prom").read_text()
    assert 'nixmox_guest_update_last_success{id="lxc/100",name="nixos-lxc"} 1.0' in prom


def test_success_switches_disarms_prunes_and_journals(
    env: RunningLab,
    guest: NixosHost,
    flake: Flake,
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    snaps = snapshots(env)
    old = [update_snapshot_name(datetime(2026, 11, d, 3, 30, tzinfo=UTC)) for d in (1, 2, 3, 4)]
    for name in old:
        snaps.take(name)
    snaps.api.post(snaps.path, snapname="manual")  # the user's own: never pruned
    flake.upstream_moves()
    code, out, row = update_lxc(capsys, config)
    assert code == 0, out
    assert row["result"] == "ok" and not row["rolled_back"]
    assert "left uncommitted" in row["message"]
    assert flake.lock() != flake.first  # the new lock is in the working tree
    # Built, then switched to exactly what was built, with the dead-man armed first.
    assert len(guest.calls("nixos-rebuild")) == 1
    calls = [line.split(" ", 1)[0] for line in guest.log_lines()]
    assert calls.index("systemd-run") < calls.index("switch-to-configuration")
    armed, switch = guest.calls("systemd-run")
    assert "--collect --on-active=5min" in armed and "--switch-generation 41" in armed
    unit = next(a for a in armed.split() if a.startswith("--unit=")).removeprefix("--unit=")
    assert unit.startswith("nixmox-deadman-")
    assert f"systemctl stop {unit}.timer" in guest.log_lines()
    # The switch in a unit of its own, waited for; nixmox's own failed leftovers reset first.
    assert switch.startswith("systemd-run --collect --no-ask-password --pipe --quiet ")
    assert "--service-type=exec --unit=nixmox-switch-" in switch and " --wait " in switch
    assert switch.endswith("/new-system/bin/switch-to-configuration switch")
    assert "systemctl reset-failed nixmox-deadman-* nixmox-switch-*" in guest.log_lines()
    # The build ran in nixmox's directory, and its GC root is gone with the switch done.
    assert (guest.root / "varlib" / "build").is_dir()
    assert not os.path.lexists(guest.root / "varlib" / "build" / "result")
    assert guest.generation() == "system-42-link"
    assert "switched-to new-system" in guest.log_lines()
    # The new snapshot deleted (keep_snapshot = false), the oldest of nixmox's pruned
    # (keep-last 3), the foreign one untouched.
    assert sorted(snaps.names()) == sorted(["manual", *old[1:]])
    [journaled] = Journal(tmp_path / "state").runs("update nixos", exact=True)
    assert journaled.result == "ok"
    assert journaled.summary["guests"][0]["guest"] == "nixos-lxc"
    assert journaled.summary["pending"] == {}
    prom = (tmp_path / "nixmox.prom").read_text()
    assert 'nixmox_guest_update_last_success{id="lxc/100",name="nixos-lxc"} 1.0' in prom
    # The guest remembers which lock its system was built from.
    assert (guest.root / "varlib" / "flake-lock-built").read_text().strip() == lock_digest(
        flake.lock()
    )


def test_a_lock_an_earlier_run_updated_but_never_switched_to_is_built(
    env: RunningLab,
    guest: NixosHost,
    flake: Flake,
    config: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The last finished update built the first lock; a later run updated the lock and died.
    (guest.root / "varlib" / "flake-lock-built").write_text(lock_digest(flake.first) + "\n")
    flake.upstream_moves()
    flake.nix.nix("flake", "lock", str(flake.dir), "--update-input", "nixpkgs")
    half_done = flake.lock()
    assert half_done != flake.first
    code, out, row = update_lxc(capsys, config)
    assert code == 0, out
    assert row["result"] == "ok"  # not "unchanged": this run's lock update changed nothing
    assert any("nixmox never switched to it" in step for step in row["steps"])
    assert len(guest.calls("nixos-rebuild")) == 1
    assert guest.generation() == "system-42-link"
    assert flake.lock() == half_done


def test_lock_unchanged_decision() -> None:
    lock = '{"version": 7}'
    assert lock_unchanged(lock, lock, None)  # no record yet: as before the first update
    assert lock_unchanged(lock, lock, lock_digest(lock))
    assert not lock_unchanged(lock, lock, lock_digest('{"version": 6}'))
    assert not lock_unchanged(lock, '{"version": 8}', lock_digest(lock))


def test_build_failure_switches_nothing(
    env: RunningLab,
    guest: NixosHost,
    flake: Flake,
    config: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    new_release(flake, guest, {"build-fails": ""})
    code, _out, row = update_lxc(capsys, config)
    assert code == 1
    assert row["result"] == "failed" and not row["rolled_back"]
    assert "build failed" in row["message"] and "nothing switched" in row["message"]
    assert len(guest.calls("nixos-rebuild")) == 1
    assert guest.calls("nix-env") == [] and guest.calls("switch-to-configuration") == []
    assert guest.calls("systemd-run") == []
    assert guest.generation() == "system-41-link"
    assert flake.lock() == flake.first  # put back, so the next run tries again
    assert snapshots(env).names() == []


def test_new_lock_that_builds_the_same_system_switches_nothing(
    env: RunningLab,
    guest: NixosHost,
    flake: Flake,
    config: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    new_release(flake, guest, {"same-system": ""})
    code, out, row = update_lxc(capsys, config)
    assert code == 0, out
    assert row["result"] == "ok" and "same system: nothing switched" in row["message"]
    assert guest.calls("nix-env") == [] and guest.calls("systemd-run") == []
    assert flake.lock() != flake.first  # the new lock stays: it is good
    assert snapshots(env).names() == []


def test_health_waits_while_the_system_is_still_starting(
    env: RunningLab,
    guest: NixosHost,
    flake: Flake,
    config: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    new_release(flake, guest, {"state.new-system": "starting\nstarting\nrunning\n"})
    clock = FakeClock()
    code, out, row = update_lxc(capsys, config, clock)
    assert code == 0, out
    assert row["result"] == "ok"
    assert guest.calls("systemctl").count("systemctl is-system-running") == 3
    assert clock.slept == [POLL, POLL]  # asked again after each pause, no longer


def test_a_system_still_starting_at_the_health_timeout_is_unhealthy(
    env: RunningLab,
    guest: NixosHost,
    flake: Flake,
    config: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    new_release(flake, guest, {"state.new-system": "starting\n"})
    clock = FakeClock()
    code, _out, row = update_lxc(capsys, config, clock)  # the health timeout is "5s"
    assert code == 1
    assert row["result"] == "rolled-back" and "generation 41" in row["rollback"]
    assert "system is starting" in row["message"]
    assert 5 <= sum(clock.slept) < 5 + POLL  # waited out the timeout, then gave up


def test_a_dead_man_switch_that_fires_during_the_checks_is_a_rollback(
    env: RunningLab,
    guest: NixosHost,
    flake: Flake,
    config: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    new_release(flake, guest, {"deadman-fires": ""})
    code, _out, row = update_lxc(capsys, config)
    assert code == 1
    assert row["result"] == "rolled-back"
    assert row["rollback"] == "generation 41 (the dead-man switch fired)"
    # The dead-man's own command line switched the guest back, through the real profile path.
    assert f"nix-env -p {PROFILE} --switch-generation 41" in guest.log_lines()
    assert guest.generation() == "system-41-link"
    assert guest.log_lines()[-1] != "switched-to new-system"
    assert flake.lock() == flake.first


def test_unhealthy_switch_goes_back_to_the_recorded_generation(
    env: RunningLab,
    guest: NixosHost,
    flake: Flake,
    config: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    new_release(flake, guest, UNHEALTHY)
    code, _out, row = update_lxc(capsys, config)
    assert code == 1
    assert row["result"] == "rolled-back" and row["rolled_back"]
    assert "generation 41" in row["rollback"]
    assert "degraded" in row["message"] and "nginx.service" in row["message"]
    assert f"nix-env -p {PROFILE} --switch-generation 41" in guest.log_lines()
    log = guest.log_lines()
    assert log.index("switched-to new-system") < log.index("switched-to system-41")
    assert guest.generation() == "system-41-link"
    assert flake.lock() == flake.first
    assert [n for n in snapshots(env).names()] == [row["snapshot"]]  # kept as evidence
    assert not posts(env, "/rollback")
    # Again, as text: the report names the rollback.
    assert run(["update", "nixos", "--config", str(config), "--guest", "nixos-lxc"]) == 1
    assert "rolled back: generation 41" in capsys.readouterr().out


def test_two_runs_within_one_second_take_two_snapshots(
    env: RunningLab,
    guest: NixosHost,
    flake: Flake,
    config: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Each run is rolled back and keeps its snapshot as evidence; both read the same second.
    new_release(flake, guest, UNHEALTHY)
    rows = []
    for _ in range(2):
        code, _out, row = update_lxc(capsys, config, FakeClock())
        assert code == 1
        assert row["result"] == "rolled-back", row
        rows.append(row)
    first, second = rows[0]["snapshot"], rows[1]["snapshot"]
    assert first != second
    assert update_snapshot_time(first) == update_snapshot_time(second) == FakeClock().start
    assert sorted(snapshots(env).names()) == sorted([first, second])


@pytest.mark.parametrize("breaks", [False, True], ids=["nothing-new", "a-new-failure"])
def test_a_unit_failed_before_the_update_is_no_reason_to_roll_back(
    env: RunningLab,
    guest: NixosHost,
    flake: Flake,
    config: Path,
    capsys: pytest.CaptureFixture[str],
    breaks: bool,
) -> None:
    failed = "media.mount loaded failed failed /media\n"
    broken = "nginx.service loaded failed failed nginx\n" if breaks else ""
    new_release(
        flake,
        guest,
        {
            "failed.system-41": failed,
            "failed.new-system": failed + broken,
            "state.new-system": "degraded\n",
        },
    )
    code, out, row = update_lxc(capsys, config)
    assert "failed before the update (not counted): media.mount" in row["steps"]
    if breaks:  # what the update broke still counts, whatever failed before
        assert code == 1
        assert row["result"] == "rolled-back"
        assert row["message"] == (
            "unhealthy after the switch: system is degraded; failed units: nginx.service"
        )
        assert guest.generation() == "system-41-link"
    else:
        assert code == 0, out
        assert row["result"] == "ok"
        assert guest.generation() == "system-42-link"


def test_a_guest_without_a_flake_says_what_to_do_first(
    env: RunningLab,
    guest: NixosHost,
    flake: Flake,
    healthz: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    empty = tmp_path / "fresh-etc-nixos"
    empty.mkdir()
    fresh = Flake.__new__(Flake)
    fresh.dir = empty
    config = write_inventory(
        tmp_path / "inv.toml", ssh_update(guest, fresh), health=health(healthz)
    )
    code, _out, row = update_lxc(capsys, config)
    assert code == 1
    assert row["result"] == "failed" and row["snapshot"] is None
    assert f"no flake.nix in {empty}" in row["message"] and "docs/nixos.md" in row["message"]
    assert guest.calls("nixos-rebuild") == [] and not posts(env, "/snapshot")


def test_guest_lost_after_the_switch_rolls_the_proxmox_snapshot_back(
    env: RunningLab,
    guest: NixosHost,
    flake: Flake,
    config: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    new_release(flake, guest, {"kill-sshd.new-system": ""})
    # A fresh connection per command: a shared one would outlive the killed listener.
    monkeypatch.setenv("NIXMOX_SSH_CONFIG", str(guest.direct_ssh_config))
    code, _out, row = update_lxc(capsys, config)
    assert code == 1
    assert row["result"] == "rolled-back" and row["rolled_back"]
    assert row["rollback"] == f"Proxmox snapshot {row['snapshot']}"
    assert "unreachable" in row["message"]
    assert posts(env, f"/lxc/100/snapshot/{row['snapshot']}/rollback")
    assert env.pve.guest(100).status == "running"


def test_commit_lock_commits_as_nixmox(
    env: RunningLab,
    guest: NixosHost,
    nix_sandbox: NixSandbox,
    healthz: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    need_binary("git", "git")
    repo = Flake(tmp_path / "git", nix_sandbox, git=True)
    repo.upstream_moves()
    inv = ssh_update(guest, repo, "commit_lock = true\nkeep_snapshot = true")
    config = write_inventory(tmp_path / "inv.toml", inv, health=health(healthz))
    code, out, row = update_lxc(capsys, config)
    assert code == 0, out
    assert "flake.lock committed" in row["message"] and "kept" in row["message"]
    assert repo.git("log", "-1", "--format=%an <%ae>|%s") == (
        "nixmox <nixmox@nixos-lxc>|flake.lock: update nixpkgs (nixmox)\n"
    )
    assert repo.git("status", "--porcelain") == ""
    assert snapshots(env).names() == [row["snapshot"]]


@pytest.mark.parametrize("policy", ["never", "allowed"])
def test_reboot_is_pending_unless_the_policy_allows_it(
    env: RunningLab,
    guest: NixosHost,
    flake: Flake,
    config: Path,
    capsys: pytest.CaptureFixture[str],
    policy: str,
) -> None:
    new_release(flake, guest, {"new-kernel": ""})
    # nixos-lxc's [guests.reboot] is the first policy of the example.
    config.write_text(config.read_text().replace('policy = "allowed"', f'policy = "{policy}"', 1))
    code, out, row = update_lxc(capsys, config)
    assert code == 0, out
    if policy == "never":
        assert row["pending"] == 1 and "reboot pending (kernel changed" in row["message"]
        assert out["pending"] == {"nixos-lxc": 1}
        assert not posts(env, "/status/reboot")
    else:
        assert row["pending"] == 0 and "rebooted (kernel changed)" in row["message"]
        assert out["pending"] == {}
        assert posts(env, "/lxc/100/status/reboot")


def test_dry_run_changes_nothing(
    env: RunningLab,
    guest: NixosHost,
    flake: Flake,
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    flake.upstream_moves()
    code = run(["update", "nixos", "--dry-run", "--config", str(config), "--guest", "nixos-lxc"])
    out = capsys.readouterr().out
    assert code == 0
    assert "dry run" in out and "record generation 41" in out
    assert f"flake lock {flake.dir} --update-input nixpkgs" in out
    assert flake.lock() == flake.first
    assert guest.calls("nixos-rebuild") == [] and guest.calls("systemd-run") == []
    assert all("--version" in line for line in guest.calls("nix"))  # only read
    assert not [r for r in env.pve.requests if r[0] != "GET"]
    assert Journal(tmp_path / "state").runs("update nixos") == []


def test_dry_run_of_the_example_plans_even_unreachable_guests(
    env: RunningLab,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The demo's line: the example's guests, home.arpa pointed at a closed loopback port."""
    closed = tmp_path / "ssh_config"
    closed.write_text("Host *.home.arpa\n  HostName 127.0.0.1\n  Port 9\n  BatchMode yes\n")
    monkeypatch.setenv("NIXMOX_SSH_CONFIG", str(closed))
    code = run(["update", "nixos", "--dry-run", "--config", str(ROOT / "examples/homelab.toml")])
    out = capsys.readouterr().out
    assert code == 0
    assert "guest not reachable: ssh root@nixos-lxc.home.arpa" in out
    assert "nixos-rebuild build --flake /etc/nixos#nixos-lxc" in out
    assert "(nix < 2.19) or" in out  # version unknown: both syntaxes shown
    # nixos-vm: its agent answers (the lab), but no NixOS generation behind it.
    assert "nixos-vm   101   dry-run  plan only; cannot read the guest" in out
    assert not [r for r in env.pve.requests if r[0] not in ("GET",) and "/agent/" not in r[1]]


def test_guests_must_be_nixos_and_reachable_somehow(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    example = str(ROOT / "examples" / "homelab.toml")
    assert run(["update", "nixos", "--config", example, "--guest", "win11-gaming"]) == 1
    assert "not updated as NixOS" in capsys.readouterr().err
    assert run(["update", "nixos", "--config", example, "--guest", "nope"]) == 1
    assert "no such guest" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"needs update\.ssh"):
        inv = load_inventory(Path(example))
        vm = inv.guest("nixos-vm")
        assert vm.update is not None
        broken = vm.model_copy(update={"update": vm.update.model_copy(update={"via": "ssh"})})
        open_access(broken, None, Runner(), None)


# -- the other transports ----------------------------------------------------------


def test_pct_transport_runs_the_update_through_pct_exec_on_the_node(
    env: RunningLab,
    guest: NixosHost,
    flake: Flake,
    healthz: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    flake.upstream_moves()
    inv = f'[guests.update]\nmethod = "nixos"\nvia = "pct"\nflake = "{flake.dir}"\n'
    config = write_inventory(
        tmp_path / "inv.toml", inv, health=health(healthz), node_address=guest.host
    )
    code, out = update(capsys, config, "--guest", "nixos-lxc")
    assert code == 0, out
    assert out["guests"][0]["result"] == "ok"
    pct = guest.calls("pct")
    assert pct and all(line.startswith("pct exec 100 -- /bin/sh -c ") for line in pct)
    assert any("nixos-rebuild build --flake" in line for line in pct)
    assert guest.generation() == "system-42-link"
    # Whole lock (no inputs listed): nix 2.8's `nix flake update FLAKE`.
    assert any(f"flake update {flake.dir}" in line for line in guest.calls("nix"))


def test_agent_transport_through_the_api(
    env: RunningLab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vm = env.pve.find("pve1", 101)
    assert vm.status == "running"
    lock = '{"nodes": {}, "root": "root", "version": 7}\n'
    sh = ["/run/current-system/sw/bin/sh", "-c"]
    read_lock = read_lock_script("/etc/nixos")
    vm.agent = {
        **(vm.agent or {}),
        "exec": {
            " ".join(AgentAccess.argv(READ_GENERATION)): {
                "exitcode": 0,
                "out-data": "system-7-link\n/nix/store/a-nixos-system\n/nix/store/a-nixos-system\n",
            },
            "/run/current-system/sw/bin/nix --version": {
                "exitcode": 0,
                "out-data": "nix (Nix) 2.24.9\n",
            },
            " ".join(AgentAccess.argv(read_lock)): {"exitcode": 0, "out-data": lock},
        },
    }
    code, out = update(capsys, ROOT / "examples" / "homelab.toml", "--guest", "nixos-vm")
    assert code == 0, out
    [row] = out["guests"]
    assert row["result"] == "unchanged"
    argvs = [a["command"] for c, a in vm.agent_requests if c == "exec"]
    # nix ≥ 2.19 in the guest, whole lock: `nix flake update --flake PATH`.
    assert [
        "/run/current-system/sw/bin/nix",
        *NIX[1:],
        "flake",
        "update",
        "--flake",
        "/etc/nixos",
    ] in argvs
    assert not any("nixos-rebuild" in " ".join(a) for a in argvs)
    assert posts(env, "/qemu/101/snapshot") and snapshots(env, "qemu", 101).names() == []
    assert sh == argvs[0][:2]  # scripts run by NixOS's sh, not the agent's bare PATH


def test_a_login_that_is_not_root_is_refused_before_anything_changes(
    env: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    vm = env.pve.find("pve1", 101)
    vm.agent = {
        **(vm.agent or {}),
        "exec": {
            " ".join(AgentAccess.argv(READ_GENERATION)): {
                "exitcode": 0,
                "out-data": "system-7-link\n/nix/store/a-nixos\n/nix/store/a-nixos\n1000\n",
            },
        },
    }
    code, out = update(capsys, ROOT / "examples" / "homelab.toml", "--guest", "nixos-vm")
    assert code == 1
    [row] = out["guests"]
    assert row["result"] == "failed" and "runs as uid 1000, not root" in row["message"]
    assert not posts(env, "/qemu/101/snapshot")


@pytest.fixture
def agent_lab(
    tmp_path_factory: pytest.TempPathFactory,
    guest: NixosHost,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[RunningLab]:
    """A lab whose VM 101 has a real qemu-ga, running inside the fake NixOS guest."""
    binary = need_binary("qemu-ga", "qemu-guest-agent")
    need_binary("nsenter", "util-linux")
    pve = Lab(host="127.0.0.1", port=0)
    pve.time_scale = 0
    running = serve_in_thread(pve, make_pki(tmp_path_factory.mktemp("pki"), "127.0.0.1"))
    try:
        with NixosGuestAgent(guest, qemu_ga=binary) as agent:
            pve.add_declared_guests()
            pve.forward_agent(101, agent.socket_path)
            point_at(running, monkeypatch, tmp_path / "state")
            yield running
    finally:
        running.stop()


@pytest.mark.parametrize("healthy", [True, False], ids=["healthy", "unhealthy"])
def test_agent_transport_end_to_end_against_a_real_qemu_ga(
    agent_lab: RunningLab,
    guest: NixosHost,
    flake: Flake,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    healthy: bool,
) -> None:
    flake.upstream_moves()
    if not healthy:
        (guest.script / "state.new-system").write_text("degraded\n")
    inv = f'[guests.update]\nmethod = "nixos"\nvia = "agent"\nflake = "{flake.dir}"\n'
    config = write_inventory(tmp_path / "inv.toml", inv, guest="nixos-vm")
    code, out = update(capsys, config, "--guest", "nixos-vm")
    [row] = out["guests"]
    execs = [a["command"] for c, a in agent_lab.pve.guest(101).agent_requests if c == "exec"]
    assert ["/run/current-system/sw/bin/nix", "--version"] in execs
    # Whole lock with nix 2.8: `nix flake update FLAKE`, through the real agent and nix.
    assert any(f"flake update {flake.dir}" in line for line in guest.calls("nix"))
    assert len(guest.calls("nixos-rebuild")) == 1
    assert "switched-to new-system" in guest.log_lines()
    if healthy:
        assert code == 0, out
        assert row["result"] == "ok"
        assert guest.generation() == "system-42-link"
        assert flake.lock() != flake.first
        assert snapshots(agent_lab, "qemu", 101).names() == []
    else:
        assert code == 1
        assert row["result"] == "rolled-back" and row["rollback"].startswith("generation 41")
        assert guest.generation() == "system-41-link"
        assert flake.lock() == flake.first  # written back through the agent's input-data
        assert snapshots(agent_lab, "qemu", 101).names() == [row["snapshot"]]


def test_reboot_policy_for_a_nixos_guest() -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from nixmox.inventory.load import load_inventory
    from nixmox.inventory.model import RebootPolicy
    from nixmox.updates.reboot_policy import guest_stop

    lxc = load_inventory(ROOT / "examples" / "homelab.toml").guest("nixos-lxc")

    def reboot_allowed(policy: RebootPolicy, now: datetime, zone: ZoneInfo) -> bool:
        return guest_stop(lxc.model_copy(update={"reboot": policy}), now, zone).allowed

    vienna = ZoneInfo("Europe/Vienna")
    sunday_4am_vienna = datetime(2026, 11, 29, 3, 20, tzinfo=UTC)
    window = RebootPolicy(policy="window", window="Sun *-*-* 04:00:00")
    assert reboot_allowed(RebootPolicy(policy="allowed"), sunday_4am_vienna, vienna)
    assert reboot_allowed(window, sunday_4am_vienna, vienna)
    assert not reboot_allowed(window, sunday_4am_vienna.replace(hour=9), vienna)
    for held in ("never", "when-idle"):
        assert not reboot_allowed(RebootPolicy(policy=held), sunday_4am_vienna, vienna)  # type: ignore[arg-type]


def test_a_disk_proxmox_cannot_snapshot_is_found_before_the_snapshot_task(
    env: RunningLab,
    guest: NixosHost,
    flake: Flake,
    config: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Issue 24 item 15: a raw disk on a dir storage (PVE's default format there).
    ct = env.pve.ct(100)
    ct.config["rootfs"] = "local:100/vm-100-disk-0.raw,size=16G"
    assert snapshots(env).supported() is False
    assert snapshots(env, "qemu", 101).supported() is True  # on the zfspool vm-disks
    flake.upstream_moves()
    code = run(["update", "nixos", "--dry-run", "--config", str(config), "--guest", "nixos-lxc"])
    assert code == 0
    assert "Proxmox cannot snapshot lxc/100" in capsys.readouterr().out
    code, _out, row = update_lxc(capsys, config)
    assert code == 1
    assert row["result"] == "failed"
    assert row["message"].startswith(
        "snapshot failed: Proxmox cannot snapshot lxc/100: a disk is on a storage or in a "
        "format without snapshots"
    )
    assert posts(env, "/lxc/100/snapshot") == []  # asked first, not tried
    assert flake.lock() == flake.first and guest.calls("nixos-rebuild") == []
