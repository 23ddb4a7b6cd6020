"""Every metric the alert rules and the Grafana dashboard read is one the code exports: the names
in their PromQL are checked against the families prometheus_client's registry collects after
Django set-up and one request (django-prometheus registers its HTTP metrics with the middleware),
with the state collectors (read from the database at scrape time) included."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from prometheus_client import REGISTRY

MONITORING = Path(settings.BASE_DIR) / "ops" / "monitoring"
# Series Prometheus itself makes for every target, not exported by us.
PROMETHEUS_OWN = {"up"}
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "rate", "irate", "increase", "topk", "bottomk", "by",
    "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "time",
    "vector", "histogram_quantile", "quantile_over_time", "max_over_time", "min_over_time",
    "avg_over_time", "absent", "bool", "offset", "clamp_min", "clamp_max", "abs", "delta",
}  # fmt: skip

pytestmark = pytest.mark.django_db


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (strings, label matchers, grouping clauses,
    ranges and function names removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        is_call = expr[match.end() :].lstrip().startswith("(")
        if not is_call and match.group() not in PROMQL_WORDS:
            names.add(match.group())
    return names


def test_metric_names_finds_the_series_and_nothing_else():
    expr = 'sum by (le) (rate(db_query_duration_seconds_bucket{le="0.1"}[5m])) / on() max(up) > 0.2'
    assert metric_names(expr) == {"db_query_duration_seconds_bucket", "up"}


def exported_names(client) -> set[str]:
    client.get("/live")  # loads the middleware stack: django-prometheus registers its metrics
    names = set()
    for family in REGISTRY.collect():
        suffixes = {
            "counter": ["_total", "_created"],
            "histogram": ["_bucket", "_sum", "_count", "_created"],
            "summary": ["", "_sum", "_count", "_created"],
        }.get(family.type, [""])
        names.update(family.name + suffix for suffix in suffixes)
        names.update(sample.name for sample in family.samples)
    return names


def rule_exprs() -> list[tuple[str, str]]:
    doc = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    return [(rule["alert"], rule["expr"]) for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[tuple[str, str]]:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def test_alert_rules_read_only_exported_metrics(client):
    exported = exported_names(client) | PROMETHEUS_OWN
    unknown = {(alert, name) for alert, expr in rule_exprs() for name in metric_names(expr) - exported}
    assert not unknown


def test_the_dashboard_reads_only_exported_metrics(client):
    exported = exported_names(client)
    unknown = {(title, name) for title, expr in dashboard_exprs() for name in metric_names(expr) - exported}
    assert not unknown


SEED_003_PANELS = {
    "1. Connection Overview": ["Active connections", "Connection rate", "Rejection rate by reason"],
    "2. Message Throughput": ["Messages sent / received per second", "Message types distribution"],
    "3. Error Tracking": ["Error rate (%)", "Error count by type", "Top error paths"],
    "4. Redis Health": ["Connection status", "Latency (p50, p95, p99)", "Reconnection events"],
    "5. System Resources": ["Memory usage", "CPU usage", "Network I/O"],
}


def test_the_dashboard_has_the_panels_seed_003_lists():
    panels = json.loads((MONITORING / "dashboard.json").read_text())["panels"]
    rows: dict[str, list[str]] = {}
    current = None
    for panel in panels:
        if panel["type"] == "row":
            current = rows.setdefault(panel["title"], [])
        else:
            current.append(panel["title"])
    for row, titles in SEED_003_PANELS.items():
        assert rows.get(row) == titles, row
