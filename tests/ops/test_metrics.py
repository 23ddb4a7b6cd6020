"""/metrics in Prometheus text, OpenMetrics and JSON, from the default and multiprocess registries."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from chatsite.api.redis import get_redis
from chatsite.metrics import WS_CONNECTION_REJECTED
from dm.models import Delivery
from tests.dm.helpers import open_conversation, party, send

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


def _queue_samples(text: str) -> dict[str, float]:
    """Every dm queue sample of a Prometheus text scrape, keyed by its name and labels."""
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(("dm_device_queue_depth", "dm_oldest_unacked_age_seconds"))
    }


def _queue_devices_with_depths(*depths: int) -> list[str]:
    """One recipient device per depth, each with that many unacknowledged deliveries (sent
    through the API); returns their ids."""
    sender = party()
    device_ids = []
    for depth in depths:
        recipient = party()
        conversation = open_conversation(sender, recipient)
        for _ in range(depth):
            assert send(sender, conversation, [recipient.device_id]).status_code == 201
        device_ids.append(recipient.device_id)
    return device_ids


def test_queue_depths_are_bucket_counts_and_maxima_without_device_ids(client):
    device_ids = _queue_devices_with_depths(1, 3, 12)
    # An acknowledged delivery is not queued: the 12-deep device is 11 deep.
    first = Delivery.objects.filter(device_id=device_ids[2]).order_by("seq").first()
    Delivery.objects.filter(pk=first.pk).update(delivered_at=timezone.now())
    # The 1-deep device's message has waited two minutes.
    Delivery.objects.filter(device_id=device_ids[0]).update(created_at=timezone.now() - timedelta(minutes=2))

    text = client.get("/metrics").content.decode()
    assert "device_id" not in text
    for device_id in device_ids:
        assert device_id not in text
    samples = _queue_samples(text)
    assert {name: value for name, value in samples.items() if "{le=" in name} == {
        'dm_device_queue_depth{le="1"}': 1.0,
        'dm_device_queue_depth{le="10"}': 2.0,
        'dm_device_queue_depth{le="100"}': 3.0,
        'dm_device_queue_depth{le="1000"}': 3.0,
        'dm_device_queue_depth{le="10000"}': 3.0,
        'dm_device_queue_depth{le="+Inf"}': 3.0,
    }
    assert samples["dm_device_queue_depth_max"] == 11.0
    assert 120 <= samples["dm_oldest_unacked_age_seconds"] < 180
    assert "dm_undelivered_messages 15.0" in text

    body = client.get("/metrics", HTTP_ACCEPT="application/json").json()
    assert body["dm_device_queue_depth"][-1] == {"labels": {"le": "+Inf"}, "value": 3}
    assert body["dm_device_queue_depth_max"] == [{"labels": {}, "value": 11}]
    assert [s["labels"] for s in body["dm_oldest_unacked_age_seconds"]] == [{}]
    assert "device_id" not in json.dumps(body)


def test_queue_gauges_are_zero_when_nothing_is_queued(client):
    samples = _queue_samples(client.get("/metrics").content.decode())
    assert samples['dm_device_queue_depth{le="+Inf"}'] == 0.0
    assert samples["dm_device_queue_depth_max"] == 0.0
    assert samples["dm_oldest_unacked_age_seconds"] == 0.0


def test_scrape_token_is_required_once_set(client, settings):
    settings.METRICS_TOKEN = "s3cret-scrape-token"
    for headers in (
        {},
        {"HTTP_AUTHORIZATION": "Bearer wrong"},
        {"HTTP_AUTHORIZATION": "s3cret-scrape-token"},
    ):
        resp = client.get("/metrics", **headers)
        assert resp.status_code == 403, headers
        assert resp.json()["code"] == "PERMISSION_DENIED"
        assert set(resp.json()) >= {"code", "detail"}
        assert "uptime_seconds" not in resp.content.decode()
    resp = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token")
    assert resp.status_code == 200
    assert "uptime_seconds" in resp.content.decode()
    json_resp = client.get(
        "/metrics", HTTP_ACCEPT="application/json", HTTP_AUTHORIZATION="bearer s3cret-scrape-token"
    )
    assert json_resp.status_code == 200 and "uptime_seconds" in json_resp.json()


def test_allowed_ips_refuse_other_addresses(client, settings):
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8", "192.0.2.7"]
    refused = client.get("/metrics")  # the test client's address is 127.0.0.1
    assert refused.status_code == 403
    assert refused.json()["code"] == "PERMISSION_DENIED"
    assert client.get("/metrics", REMOTE_ADDR="10.20.30.40").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.7").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.8").status_code == 403


def test_allowed_ips_see_the_client_address_through_trusted_proxies_only(client, settings):
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    # A direct client cannot claim an allowed address in X-Forwarded-For.
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR="10.1.1.1").status_code == 403
    # Behind our balancer, the address it saw is the client's.
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR="10.1.1.1").status_code == 200
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 403


def test_allowed_ips_and_token_are_both_required_when_both_are_set(client, settings):
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    settings.METRICS_TOKEN = "both-token"
    auth = {"HTTP_AUTHORIZATION": "Bearer both-token"}
    assert client.get("/metrics", **auth).status_code == 403  # right token, wrong address
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.5").status_code == 403  # no token
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.5", **auth).status_code == 200
