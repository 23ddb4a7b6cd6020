"""/metrics in Prometheus text, OpenMetrics and JSON, from the default and multiprocess registries."""

from __future__ import annotations

import pytest

from chatsite.api.redis import get_redis
from chatsite.metrics import WS_CONNECTION_REJECTED

pytestmark = pytest.mark.django_db

EXPECTED_NAMES = [
    "websocket_connections_active",
    "ws_connection_rejected",
    "redis_ready",
    "uptime_seconds",
    "django_http_requests",
]


def _sample(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(f"{name} "))
    return float(line.split()[1])


def test_metrics_is_prometheus_text(client):
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp["Content-Type"].startswith("text/plain; version=0.0.4")
    text = resp.content.decode()
    for name in EXPECTED_NAMES:
        assert name in text, name
    assert "# TYPE websocket_connections_active gauge" in text
    assert "# TYPE ws_connection_rejected_total counter" in text
    # Both gauges are refreshed by the scrape itself.
    assert _sample(text, "redis_ready") == 1.0
    assert _sample(text, "uptime_seconds") > 0


def test_redis_ready_drops_to_zero_when_redis_is_unreachable(client, settings):
    get_redis.cache_clear()
    settings.REDIS_URL = "redis://127.0.0.1:6399/0"
    try:
        assert _sample(client.get("/metrics").content.decode(), "redis_ready") == 0.0
    finally:
        get_redis.cache_clear()


def test_metrics_speaks_openmetrics_when_asked(client):
    resp = client.get("/metrics", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")
    assert resp.status_code == 200
    assert resp["Content-Type"].startswith("application/openmetrics-text")
    assert resp.content.decode().rstrip().endswith("# EOF")


def test_metrics_as_json(client):
    WS_CONNECTION_REJECTED.labels(reason="origin").inc()
    client.get("/nope", secure=True)  # one request through django-prometheus' middleware
    resp = client.get("/metrics", HTTP_ACCEPT="application/json")
    assert resp.status_code == 200
    assert resp["Content-Type"] == "application/json"
    body = resp.json()
    for name in EXPECTED_NAMES[:-1]:
        assert isinstance(body[name], list), name
    assert any(name.startswith("django_http_requests") for name in body)
    assert body["redis_ready"] == [{"labels": {}, "value": 1.0}]
    assert body["uptime_seconds"][0]["value"] > 0
    rejected = {s["labels"]["reason"]: s["value"] for s in body["ws_connection_rejected"]}
    assert rejected["origin"] >= 1
    # Histogram parts say which series they are.
    latency = body["django_http_requests_latency_seconds_by_view_method"]
    assert latency
    assert all(s["sample"].endswith(("_bucket", "_count", "_sum")) for s in latency)


def test_metrics_aggregates_processes_when_multiproc_dir_is_set(client, monkeypatch, tmp_path):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp["Content-Type"].startswith("text/plain")
    # Read from the (empty) directory, not this process's registry: only the collectors that read
    # stored state (dm's queue gauges) are added, since they are not per-process samples.
    assert "python_gc_objects_collected" not in resp.content.decode()
    body = client.get("/metrics", HTTP_ACCEPT="application/json").json()
    assert "websocket_connections_active" not in body
    assert body["dm_undelivered_messages"] == [{"labels": {}, "value": 0}]
