"""nixmox's textfile and Grafana dashboard, read by the real Prometheus.

nixmox's jobs run against the lab (backups, a failed backup, ZFS snapshots on
zfs-fuse, Windows updates held and rolled back, an interrupted run, the journal
moved aside in between, a scrub and a pool check of the zfs-fuse pools, and a
pool check of a degraded pool with real disks from the captured zpool and
smartctl data files, which zfs-fuse's file vdevs cannot give).
node_exporter's textfile collector serves the textfile,
prometheus-pve-exporter reads the lab (its certificate checked), and one
Prometheus scrapes both every second. Then every dashboard target runs as
Grafana would send it, instant and range, with ``$__rate_interval``,
``$__range`` and the datasource variable filled in.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nixmox.adapters.journal import Journal
from nixmox.cli import update_windows as update_windows_command
from nixmox.cli.main import run
from nixmox.inventory.load import load_inventory
from nixmox.runtime.run import observed_run
from nixmox.windows.update import Timing
from tests.lab.fixtures import fresh_lab
from tests.lab.inventory import load_inventory as load_lab_inventory
from tests.lab.serving import RunningLab, make_pki
from tests.lab.windows_agent import WindowsAgent, update
from tests.lab.zfs_pools import create_lab_datasets
from tests.peers._proc import wait_until
from tests.peers.prometheus import NodeExporter, Prometheus, PromQL, PveExporter
from tests.peers.require import missing, need_binary
from tests.peers.zfs import ZfsFuse, unique_pool_name
from tests.pool_support import TIB, capacity_run, tank_check

pytestmark = pytest.mark.peer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "homelab.toml"
DASHBOARD = json.loads((ROOT / "templates" / "grafana" / "nixmox.json").read_text())
#: The scrape interval, also given to Grafana's data source ("Scrape interval").
SCRAPE = 1
#: Grafana's default "Max data points" for a panel about a thousand pixels wide.
MAX_POINTS = 1000
#: A guest Proxmox has and nixmox does not manage (so it has no nixmox backup).
FOREIGN = 555
WINDOWS = 102
#: A series that first appears in the last round of jobs (every result of a command is
#: there at 0 from its first run, so a new run count is no new series).
NEWEST = 'nixmox_pool_state{pool="tank",state="DEGRADED"}'


@dataclass
class Clock:
    """Time for the Windows update transaction that passes only when it sleeps
    (each run an hour after the last, so their snapshot names differ)."""

    start: datetime
    t: float = 0.0

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.t)


@dataclass
class Stack:
    """The lab after the jobs ran, and the Prometheus that scraped it."""

    prom: PromQL
    state: Path
    start: float
    lab: RunningLab
    pve_exporter: str
    tmp: Path
    end: float = 0.0
    #: (step, promtool's exit status and output) for each textfile nixmox wrote
    checked: list[tuple[str, int, str]] = field(default_factory=list)


def _pve_exporter() -> str:
    found = shutil.which("pve_exporter") or str(Path(sys.executable).parent / "pve_exporter")
    if not Path(found).exists():
        missing("pve_exporter not found: pip install prometheus-pve-exporter (the dev extra)")
    return found


def _inventory(path: Path, pools: dict[str, str], textfile: Path) -> Path:
    """The example lab with its pools renamed (``pools``: old -> new, unique on the shared
    zfs-fuse) and its textfile in ``textfile``."""
    text = EXAMPLE.read_text()
    for old, new in pools.items():
        text = text.replace(f'"{old}/', f'"{new}/')
        if old != "usb":  # "usb" alone is also the replication target's name: it stays
            text = text.replace(f'"{old}"', f'"{new}"')
    text = text.replace(
        'textfile = "/var/lib/prometheus/node-exporter/nixmox.prom"', f'textfile = "{textfile}"'
    )
    # Replication to the USB pool only: the NAS target is another machine over ssh.
    text = re.sub(r"\[replication\.targets\.nas\]\n(?:[^\[\n][^\n]*\n)*", "", text)
    text = re.sub(
        r'\[\[replication\.datasets\]\]\n[^\[]*target = "nas"\n[^\[]*?(?=\n[#\[])', "", text
    )
    assert "nas" not in tomllib.loads(text)["replication"]["targets"]
    # The scrub runs now, whatever the hour: no pause window.
    text = "\n".join(line for line in text.splitlines() if not line.startswith("pause_during"))
    path.write_text(text + "\n")
    return path


def _settled(prom: PromQL, expr: str, value: float) -> None:
    """Wait until Prometheus has scraped the textfile that makes ``expr`` equal ``value``."""

    def seen() -> bool:
        return [float(s["value"][1]) for s in prom.vector(expr)] == [value]

    wait_until(seen, timeout=20, what=f"Prometheus to see {expr} == {value}", interval=0.2)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, zfs: ZfsFuse) -> Iterator[Stack]:
    prometheus = need_binary("prometheus", "prometheus")
    promtool = need_binary("promtool", "prometheus")
    node_exporter = need_binary("prometheus-node-exporter", "prometheus-node-exporter")
    pve_exporter = _pve_exporter()
    tmp = tmp_path_factory.mktemp("prometheus-stack")
    textfiles = tmp / "textfiles"
    textfiles.mkdir()
    textfile = textfiles / "nixmox.prom"
    (tmp / "pki").mkdir()
    (tmp / "other-ca").mkdir()
    state = tmp / "state"
    # usb: the example's local replication target, a pool of its own.
    pools = {
        "rpool": unique_pool_name("r"),
        "tank": unique_pool_name("t"),
        "usb": unique_pool_name("u"),
    }
    inv_path = _inventory(tmp / "nixmox.toml", pools, textfile)
    try:
        create_lab_datasets(zfs, load_lab_inventory(inv_path))
        with (
            fresh_lab(tmp / "pki") as lab,
            NodeExporter(node_exporter, textfiles) as node,
            PveExporter(
                pve_exporter, token_id=lab.token_id, token=lab.token, ca_file=lab.ca_file
            ) as pve,
            Prometheus(
                prometheus,
                node=node.address,
                pve=pve.address,
                pve_target=lab.url.removeprefix("https://"),
                interval=f"{SCRAPE}s",
            ) as server,
            pytest.MonkeyPatch.context() as mp,
        ):
            for key, value in {**lab.env, **zfs.env()}.items():
                mp.setenv(key, value)
            mp.setenv("NIXMOX_STATE_DIR", str(state))
            mp.setenv("NIXMOX_NOTIFY_URLS", "")
            mp.delenv("NIXMOX_METRICS_TEXTFILE", raising=False)
            lab.pve.add_declared_guests()
            lab.pve.add_vm(FOREIGN, "legacy-vm", node="pve1")
            lab.pve.find("pve1", WINDOWS).status = "running"
            stack = Stack(server.api, state, time.time(), lab, pve_exporter, tmp)
            _run_jobs(stack, lab, inv_path, state, textfile, promtool)
            stack.end = time.time()
            yield stack
    finally:
        for pool in pools.values():
            if zfs.zpool("list", "-H", pool, check=False).returncode == 0:
                zfs.destroy_pool(pool)


def _run_jobs(
    stack: Stack, lab: RunningLab, inv_path: Path, state: Path, textfile: Path, promtool: str
) -> None:
    config = ["--config", str(inv_path)]

    def step(name: str, expected: int, call: Any) -> None:
        code = call()
        assert code == expected, (name, code)
        lint = subprocess.run(
            [promtool, "check", "metrics"],
            input=textfile.read_text(),
            capture_output=True,
            text=True,
            timeout=30,
        )
        stack.checked.append((name, lint.returncode, lint.stdout + lint.stderr))

    # One scripted Windows for all runs: it keeps what nixmox deployed to it.
    windows = lab.pve.script_windows_agent(WINDOWS, WindowsAgent.demo())

    hours = iter(range(100))

    def update_windows(expected: int, **agent: Any) -> None:
        start = datetime(2026, 11, 25, 19, 0, tzinfo=UTC) + timedelta(hours=next(hours))
        state = {"processes": [], "gpu_problem": 0, "gpu_problem_after_install": None, **agent}
        for key, value in state.items():
            setattr(windows, key, value)
        step(
            f"update windows {sorted(agent)}",
            expected,
            lambda: update_windows_command.run(
                inv_path,
                ["win11-gaming"],
                dry_run=False,
                as_json=True,
                clock=Clock(start),
                timing=Timing(agent_wait=30, reboot_wait=120, ping_every=5),
            ),
        )

    # First the series every later increase starts from.
    step("backup", 0, lambda: run(["backup", "--json", *config]))
    update_windows(0, processes=["RustClient.exe"])  # reboot held: a game runs
    _settled(stack.prom, 'nixmox_job_runs_total{command="update windows",result="ok"}', 1)

    # A damaged journal is moved aside (issue 15): the counters go on from where they were.
    (state / "journal.sqlite3").rename(state / "journal.sqlite3.damaged")
    step("backup", 0, lambda: run(["backup", "--json", *config]))
    step("snapshot", 0, lambda: run(["snapshot", "--json", *config]))
    step("replicate", 0, lambda: run(["replicate", "--json", *config]))
    # An update that breaks the GPU's driver (code 43) is rolled back.
    offered = [update("KB5050009", reboot=False)]
    update_windows(1, reboot_pending=False, available=offered, gpu_problem_after_install=43)
    update_windows(0, reboot_pending=True, processes=["RustClient.exe"])
    lab.pve.fail_backup(101, "unable to access disk: Input/output error")
    step("backup (101 fails)", 1, lambda: run(["backup", "--json", *config]))
    lab.pve.clear_backup_failures()

    # What the job runtime records for a run stopped by SIGINT/SIGTERM (issue 15).
    def interrupted() -> int:
        with observed_run(load_inventory(inv_path), "backup") as job:
            job.result = "interrupted"
            job.summary = {"guests": [], "interrupted": "SIGTERM"}
        return 0

    step("pool scrub", 0, lambda: run(["pool", "scrub", "--json", *config]))
    step("pool check", 0, lambda: run(["pool", "check", "--json", *config]))

    def captured_pool() -> int:
        now = datetime.now(UTC)
        summary = tank_check(now, history=(capacity_run(10, int(5.2 * TIB)),))
        with observed_run(load_inventory(inv_path), "pool check") as job:
            job.summary = summary
        return 0

    step("pool check (captured tank)", 0, captured_pool)
    step("backup (interrupted)", 0, interrupted)
    _settled(stack.prom, 'nixmox_job_runs_total{command="backup",result="interrupted"}', 1)
    # Rates need two samples in $__rate_interval: let a few more scrapes land.
    wait_until(
        lambda: bool(stack.prom.vector(f"count_over_time({NEWEST}[1m]) >= 3")),
        timeout=20,
        what="three scrapes of the last textfile",
        interval=0.2,
    )
    wait_until(
        lambda: bool(stack.prom.vector("pve_guest_info")),
        timeout=20,
        what="pve-exporter's pve_guest_info in Prometheus",
        interval=0.2,
    )


# -- Grafana's side ---------------------------------------------------------------


def _datasource_variable() -> str:
    (variable,) = DASHBOARD["templating"]["list"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    return str(variable["name"])


def _grafana_expr(expr: str, seconds: float) -> tuple[str, int]:
    """``expr`` with Grafana's variables for a query over ``seconds``; and its step.

    $__interval: the range over the panel's max data points, never below the data
    source's scrape interval; $__rate_interval: max($__interval + scrape, 4 * scrape).
    """
    interval = max(SCRAPE, int(-(-seconds // MAX_POINTS)))
    rate_interval = max(interval + SCRAPE, 4 * SCRAPE)
    values = {
        "__rate_interval": f"{rate_interval}s",
        "__interval": f"{interval}s",
        "__interval_ms": str(interval * 1000),
        "__range": f"{round(seconds)}s",
        "__range_s": str(round(seconds)),
        "__range_ms": str(round(seconds * 1000)),
    }
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", values[name]).replace(f"${name}", values[name])
    assert "$" not in expr, expr
    return expr, interval


def _legend(fmt: str, labels: dict[str, str]) -> str:
    """What Grafana names a series: ``{{label}}`` filled in, or all its labels."""
    if not fmt:
        return json.dumps(labels, sort_keys=True)
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)


TARGETS = [
    pytest.param(panel, target, id=f"{panel['title']}/{target['refId']}")
    for panel in DASHBOARD["panels"]
    for target in panel.get("targets", [])
]


def _answers(stack: Stack, target: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The instant and the range answer to ``target``, each checked to be a success."""
    # The datasource is the dashboard's variable; here it points at the Prometheus under test.
    assert target["datasource"] == {"type": "prometheus", "uid": f"${{{_datasource_variable()}}}"}
    seconds = stack.end - stack.start + 2
    expr, step = _grafana_expr(target["expr"], seconds)
    instant = stack.prom.query(expr)
    ranged = stack.prom.query_range(expr, stack.start - 1, time.time(), f"{step}s")
    for answer in (instant, ranged):
        assert answer["status"] == "success", (expr, answer)
    return {"instant": instant["data"]["result"], "range": ranged["data"]["result"]}


@pytest.mark.parametrize(("panel", "target"), TARGETS)
def test_every_target_parses_has_data_and_names_distinct_series(
    stack: Stack, panel: dict[str, Any], target: dict[str, Any]
) -> None:
    for kind, series in _answers(stack, target).items():
        assert series, (panel["title"], kind, "no data")
        legends = [_legend(target["legendFormat"], s["metric"]) for s in series]
        assert len(legends) == len(set(legends)), (panel["title"], kind, legends)
        assert all(legends), (panel["title"], kind)


def _by_title(title: str) -> dict[str, Any]:
    panel = next(p for p in DASHBOARD["panels"] if p["title"] == title)
    (target,) = panel["targets"]
    return dict(target)


def _values(stack: Stack, title: str, *labels: str) -> dict[tuple[str, ...], float]:
    """The panel's instant values keyed by ``labels``."""
    series = _answers(stack, _by_title(title))["instant"]
    return {tuple(s["metric"][k] for k in labels): float(s["value"][1]) for s in series}


COMMANDS = {"backup", "snapshot", "replicate", "update windows", "pool scrub", "pool check"}


def test_the_job_panels_show_one_series_per_command_with_its_values(stack: Stack) -> None:
    journal = Journal(stack.state)
    try:
        latest = journal.latest()
    finally:
        journal.close()
    success = _values(stack, "Last run succeeded", "command")
    assert success == {
        ("backup",): 0,
        ("snapshot",): 1,
        ("replicate",): 1,
        ("update windows",): 1,
        ("pool scrub",): 1,
        ("pool check",): 1,
    }
    since = _values(stack, "Since the last run", "command")
    assert set(since) == {(c,) for c in COMMANDS}
    for (command,), age in since.items():
        ended = latest[command].ended
        assert ended is not None and 0 <= time.time() - ended - age < 30, command
    took = _values(stack, "Duration of the last run", "command")
    assert took == {(c,): pytest.approx(latest[c].seconds) for c in COMMANDS}
    # Runs by result: never summed across commands, and a failure or an interruption is an
    # increase the panel shows (every result exists at 0 from a command's first run).
    runs = _answers(stack, _by_title("Runs by result"))["range"]
    peaks = {
        (s["metric"]["command"], s["metric"]["result"]): max(float(v) for _, v in s["values"])
        for s in runs
    }
    assert {c for c, _ in peaks} == COMMANDS
    for shown in [("backup", "failed"), ("backup", "interrupted"), ("update windows", "failed")]:
        assert peaks[shown] > 0, shown
    assert peaks[("snapshot", "error")] == 0


def test_the_run_counter_never_went_down_across_the_moved_journal(stack: Stack) -> None:
    window = f"{round(stack.end - stack.start) + 5}s"
    resets = stack.prom.vector(f"resets(nixmox_job_runs_total[{window}])")
    assert resets and all(float(s["value"][1]) == 0 for s in resets)
    totals = {
        (s["metric"]["command"], s["metric"]["result"]): float(s["value"][1])
        for s in stack.prom.vector("nixmox_job_runs_total > 0")
    }
    # Both journals' runs: 2 backups ok (one before the move), 1 failed, 1 interrupted.
    assert totals == {
        ("backup", "ok"): 2,
        ("backup", "failed"): 1,
        ("backup", "interrupted"): 1,
        ("snapshot", "ok"): 1,
        ("replicate", "ok"): 1,
        ("update windows", "ok"): 2,
        ("update windows", "failed"): 1,
        ("pool scrub", "ok"): 1,
        ("pool check", "ok"): 2,
    }
    # Prometheus's own `job` is the scrape job's; nixmox's label came through untouched.
    assert not stack.prom.vector("nixmox_job_runs_total{exported_job!=''}")
    assert {s["metric"]["job"] for s in stack.prom.vector("nixmox_job_runs_total")} == {"node"}


def test_the_backup_joins_match_the_guests(stack: Stack) -> None:
    age = _answers(stack, _by_title("Age of each guest's newest backup"))["instant"]
    assert {(s["metric"]["id"], s["metric"]["name"], s["metric"]["node"]) for s in age} == {
        ("lxc/100", "nixos-lxc", "pve1"),
        ("qemu/101", "nixos-vm", "pve1"),
        ("qemu/102", "win11-gaming", "pve1"),
    }
    # The template VM (9000) is no guest nixmox forgot to back up; the foreign VM is.
    without = _answers(stack, _by_title("Guests without a nixmox backup"))["instant"]
    assert [(s["metric"]["id"], s["metric"]["name"]) for s in without] == [
        (f"qemu/{FOREIGN}", "legacy-vm")
    ]
    assert stack.prom.vector('pve_guest_info{template="1"}')  # there is one to leave out


def test_the_update_and_snapshot_panels(stack: Stack) -> None:
    assert _values(stack, "Last update succeeded", "name") == {("win11-gaming",): 1}
    assert _values(stack, "Pending updates", "target") == {("win11-gaming",): 1}
    rollbacks = _answers(stack, _by_title("Rollbacks"))["range"]
    assert [s["metric"]["id"] for s in rollbacks] == [f"qemu/{WINDOWS}"]
    assert max(float(v) for _, v in rollbacks[0]["values"]) > 0
    datasets = _values(stack, "Snapshots per dataset", "dataset")
    # Every dataset the inventory snapshots (the pool's name differs per run), each snapshotted.
    declared = load_inventory(EXAMPLE).snapshots
    assert declared is not None
    assert len(datasets) == len(declared.datasets) and all(n >= 1 for n in datasets.values())
    # The example replicates tank/shared to the USB pool: its lag is the snapshot's age.
    lag = _values(stack, "Replication lag", "dataset", "target")
    assert [(name.split("/", 1)[1], target) for name, target in lag] == [("shared", "usb")]
    assert all(0 <= age < 3600 for age in lag.values())
    since = _values(stack, "Since the last successful replication", "dataset", "target")
    assert set(since) == set(lag)


def test_the_pool_and_disk_panels(stack: Stack) -> None:
    journal = Journal(stack.state)
    try:
        [scrub] = journal.runs("pool scrub")
    finally:
        journal.close()
    scrubbed = {row["pool"] for row in scrub.summary["pools"]}
    assert len(scrubbed) == 2  # the example's two pools, on zfs-fuse
    states = _values(stack, "Pool state", "pool", "state")
    assert states == {**{(p, "ONLINE"): 1 for p in scrubbed}, ("tank", "DEGRADED"): 1}
    since = _values(stack, "Since the last scrub", "pool")
    assert all(0 <= since[(p,)] < 600 for p in scrubbed)
    assert since[("tank",)] > 86400  # zpool status's scrub of the captured pool, long ago
    used = _values(stack, "Pool capacity", "pool")
    assert used[("tank",)] == 0.75 and all(0 < used[(p,)] < 1 for p in scrubbed)
    days = _values(stack, "Time until the forecast threshold", "pool")[("tank",)] / 86400
    assert 14 < days < 16
    health = _values(stack, "Disk SMART health", "device")
    assert len(health) == 5 and set(health.values()) == {1}
    errors = _answers(stack, _by_title("Device errors"))["instant"]
    bad = {(s["metric"]["vdev"], s["metric"]["type"]) for s in errors if float(s["value"][1])}
    assert bad == {
        ("ata-ST8000VN004-3CP101_WWZ2EFGH", "read"),
        ("ata-ST8000VN004-3CP101_WWZ2EFGH", "checksum"),
    }


def test_promtool_accepts_every_textfile_nixmox_wrote(stack: Stack) -> None:
    assert len(stack.checked) == 12
    for name, code, output in stack.checked:
        assert (code, output.strip()) == (0, ""), name


def test_pve_exporter_really_checks_the_labs_certificate(stack: Stack) -> None:
    # The same exporter given another CA must refuse the lab: verify_ssl is no formality.
    other_ca, _, _ = make_pki(stack.tmp / "other-ca", "127.0.0.1")
    lab = stack.lab
    with PveExporter(
        stack.pve_exporter, token_id=lab.token_id, token=lab.token, ca_file=other_ca
    ) as exporter:
        target = lab.url.removeprefix("https://")
        url = f"http://{exporter.address}/pve?module=default&cluster=1&node=1&target={target}"
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                body = resp.read().decode()
        except urllib.error.HTTPError as exc:
            body = exc.read().decode()
        assert exporter.tmp is not None
        log = (exporter.tmp / "log").read_text(errors="replace")
    assert "pve_guest_info{" not in body
    assert "CERTIFICATE_VERIFY_FAILED" in log, log[-2000:]
