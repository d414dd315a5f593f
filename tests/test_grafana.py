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
    expr = 'sum by (job, result) (increase(nixmox_job_runs_total{job="x"}[$__rate_interval]))'
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
    for panel in dashboard["panels"]:
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs))
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])


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
    ],
    ids=["backup-age", "backup-size", "snapshots", "jobs", "updates", "pending"],
)
def test_each_metric_group_is_on_the_dashboard(dashboard: dict[str, Any], group: set[str]) -> None:
    used = set().union(*(metric_names(t["expr"]) for _, t in queries(dashboard)))
    assert group <= used, group - used


def test_every_exported_metric_is_on_the_dashboard(dashboard: dict[str, Any]) -> None:
    used = set().union(*(metric_names(t["expr"]) for _, t in queries(dashboard)))
    assert set(METRICS) <= used, set(METRICS) - used
