"""templates/grafana/nixmox.json: a valid dashboard that queries only metrics nixmox exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from nixmox.observe.metric_names import METRICS

DASHBOARD = Path(__file__).resolve().parent.parent / "templates" / "grafana" / "nixmox.json"
#: prometheus-pve-exporter's metric the guest panels join with (on ``id``).
JOINS = {"pve_guest_info"}

# PromQL words that look like metric names: functions, aggregations, keywords.
_PROMQL = {
    "time", "max", "min", "sum", "avg", "count", "increase", "rate", "by", "without", "on",
    "ignoring", "group_left", "group_right", "unless", "and", "or", "offset",
}  # fmt: skip
_LABELS = re.compile(
    r"\{[^}]*\}|\[[^\]]*\]|\b(by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)"
)
_WORD = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` reads: its identifiers minus label lists, ranges and PromQL."""
    bare = _LABELS.sub(lambda m: m.group(1) or "", expr)
    return {w for w in _WORD.findall(bare) if w not in _PROMQL}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def queries(dashboard: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(p, t) for p in dashboard["panels"] for t in p.get("targets", [])]


def test_metric_names_are_read_from_expressions() -> None:
    expr = 'sum by (command, result) (increase(nixmox_job_runs_total{command="x"}[5m]))'
    assert metric_names(expr) == {"nixmox_job_runs_total"}
    assert metric_names("a * on (id) group_left (node) max by (id, node) (b)") == {"a", "b"}


def test_every_query_names_only_exported_metrics(dashboard: dict[str, Any]) -> None:
    found = queries(dashboard)
    assert found
    for panel, target in found:
        names = metric_names(target["expr"])
        assert names, panel["title"]
        assert names <= set(METRICS) | JOINS, (panel["title"], names - set(METRICS) - JOINS)


def test_every_panel_has_the_prometheus_datasource_variable(dashboard: dict[str, Any]) -> None:
    (variable,) = dashboard["templating"]["list"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    ref = {"type": "prometheus", "uid": f"${{{variable['name']}}}"}
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == ref, panel["title"]
        assert all(t["datasource"] == ref for t in panel["targets"]), panel["title"]


def test_dashboard_shape(dashboard: dict[str, Any]) -> None:
    assert 36 <= dashboard["schemaVersion"] <= 41
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs))
        pos = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(pos)
        # Grafana's grid is 24 columns wide: a panel past it is pushed onto a row of its own.
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        assert pos["y"] >= 0 and pos["h"] > 0, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, (panel["title"], "overlaps", cells[(x, y)])
                cells[(x, y)] = panel["title"]
        for target in panel.get("targets", []):
            assert target.get("datasource", {}).get("uid"), (panel["title"], target["refId"])


def test_import_asks_for_the_prometheus_data_source(dashboard: dict[str, Any]) -> None:
    # Grafana's import form asks for every datasource input and replaces ${NAME} in the
    # JSON with the choice: here the default of the dashboard's datasource variable.
    (source,) = dashboard["__inputs"]
    assert (source["type"], source["pluginId"]) == ("datasource", "prometheus")
    (variable,) = dashboard["templating"]["list"]
    assert variable["current"]["value"] == f"${{{source['name']}}}"
    required = {(r["type"], r["id"]) for r in dashboard["__requires"]}
    panel_types = {p["type"] for p in dashboard["panels"] if p["type"] != "row"}
    assert ("datasource", "prometheus") in required and ("grafana", "grafana") in required
    assert {("panel", t) for t in panel_types} <= required


def test_no_query_groups_by_the_scrape_job_label(dashboard: dict[str, Any]) -> None:
    # Prometheus owns `job` (and `instance`): nixmox's own metrics never carry them.
    assert all("job" not in labels for _, labels, _ in METRICS.values())
    for panel, target in queries(dashboard):
        assert not re.search(r"\bjob\b(?!_)", target["expr"] + target["legendFormat"]), panel[
            "title"
        ]


@pytest.mark.parametrize(
    "group",
    [
        # backup ages, joined with prometheus-pve-exporter for the node
        {"nixmox_guest_backup_newest_timestamp_seconds", "pve_guest_info"},
        {"nixmox_guest_backup_newest_size_bytes"},
        # snapshot freshness
        {"nixmox_dataset_snapshot_newest_timestamp_seconds", "nixmox_dataset_snapshots"},
        # job results, last run, duration
        {
            "nixmox_job_last_run_success",
            "nixmox_job_last_run_timestamp_seconds",
            "nixmox_job_last_run_duration_seconds",
            "nixmox_job_runs_total",
        },
        # update history and pending updates
        {"nixmox_update_rollbacks_total", "nixmox_guest_update_last_success"},
        {"nixmox_pending_updates"},
        # replication lag and last success
        {
            "nixmox_replication_newest_timestamp_seconds",
            "nixmox_replication_last_success_timestamp_seconds",
        },
    ],
    ids=["backup-age", "backup-size", "snapshots", "jobs", "updates", "pending", "replication"],
)
def test_each_metric_group_is_on_the_dashboard(dashboard: dict[str, Any], group: set[str]) -> None:
    used = set().union(*(metric_names(t["expr"]) for _, t in queries(dashboard)))
    assert group <= used, group - used


def test_every_exported_metric_is_on_the_dashboard(dashboard: dict[str, Any]) -> None:
    used = set().union(*(metric_names(t["expr"]) for _, t in queries(dashboard)))
    assert set(METRICS) <= used, set(METRICS) - used
