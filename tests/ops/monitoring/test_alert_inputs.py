"""The metrics added for the alerts (ops/monitoring/alerts.yml) move when their event happens."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from tests.dm.helpers import party
from tests.factories import UserFactory
from tests.groups.helpers import distribute, make_group

pytestmark = pytest.mark.django_db


def value(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scraped(client, name: str) -> float:
    text = client.get("/metrics").content.decode()
    return next(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def test_a_failed_log_in_counts_in_auth_login_failures():
    user = UserFactory()
    before = value("auth_login_failures_total", channel="api")

    resp = APIClient().post("/auth/login", {"username": user.username, "password": "wrong"}, format="json")

    assert resp.status_code == 401
    assert value("auth_login_failures_total", channel="api") == before + 1


def test_an_sse_request_without_credentials_counts_as_an_unauthenticated_rejection(client):
    before = value("ws_connection_rejected_total", reason="unauthenticated")

    assert client.get("/dm/sse").status_code == 401

    assert value("ws_connection_rejected_total", reason="unauthenticated") == before + 1


@pytest.mark.django_db(transaction=True)
def test_a_refused_sender_key_distribution_counts_by_code():
    alice, bob = party(), party()
    group = make_group(alice, bob)
    before = value("group_sender_key_distribution_failures_total", code="DEVICE_MISMATCH")
    stored = value("group_sender_key_distributions_total")

    assert distribute(alice, group, envelopes=[]).status_code == 409

    assert value("group_sender_key_distribution_failures_total", code="DEVICE_MISMATCH") == before + 1
    assert value("group_sender_key_distributions_total") == stored


def test_sql_statements_are_timed():
    before = value("db_query_duration_seconds_count")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(0.01)")
    assert value("db_query_duration_seconds_count") >= before + 1
    assert value("db_query_duration_seconds_bucket", le="0.005") < value("db_query_duration_seconds_count")


def test_a_scrape_records_the_redis_ping_and_the_connection_limit(client):
    assert 0 < scraped(client, "redis_ping_seconds") < 0.5
    assert scraped(client, "websocket_connections_max") == settings.MAX_TOTAL_CONNECTIONS


# The label sets the alert rules select (ops/monitoring/alerts.yml), with the labels they carry.
ALERTED_SERIES = [
    ("auth_login_failures_total", {"channel": "api"}),  # FailedAuthSpike
    ("auth_login_failures_total", {"channel": "admin"}),
    ("ws_connection_rejected_total", {"reason": "unauthenticated"}),  # StreamAuthExpiredSpike
    ("ws_connection_rejected_total", {"reason": "total_limit"}),  # StreamConnectionFailureRateHigh
    ("ws_connection_rejected_total", {"reason": "ip_limit"}),
    ("ws_connection_rejected_total", {"reason": "origin"}),
    ("websocket_connections_total", {"transport": "ws"}),
    ("websocket_connections_total", {"transport": "sse"}),
    ("websocket_disconnections_total", {"transport": "ws", "reason": "unauthenticated"}),
    ("websocket_disconnections_total", {"transport": "sse", "reason": "unauthenticated"}),
]

_FRESH_PROCESS = """
import json, os
os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
import django
django.setup()
from django.urls import resolve  # loads the URLconf and every module /metrics pulls in
resolve("/metrics")
from prometheus_client import REGISTRY
series = json.loads(os.environ["SERIES"])
print(json.dumps([REGISTRY.get_sample_value(name, labels) for name, labels in series]))
"""


def test_a_fresh_process_exposes_the_alerted_label_sets_at_zero_before_any_event():
    # A new interpreter: in this one, earlier tests may already have counted these events.
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "chatsite.settings", "SERIES": json.dumps(ALERTED_SERIES)}
    done = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    values = json.loads(done.stdout.strip().splitlines()[-1])
    assert dict(zip([f"{n}{labels}" for n, labels in ALERTED_SERIES], values, strict=True)) == {
        f"{n}{labels}": 0.0 for n, labels in ALERTED_SERIES
    }


def test_metrics_exposes_every_alerted_label_set(client):
    text = client.get("/metrics").content.decode()
    exposed = {
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    missing = [
        (name, labels)
        for name, labels in ALERTED_SERIES
        if (name, tuple(sorted(labels.items()))) not in exposed
    ]
    assert missing == []
