"""Probe endpoints against the real PostgreSQL and Redis; Redis failures are real (a closed port)."""

from __future__ import annotations

import threading
import time

import pytest
from django.conf import settings
from django.test import AsyncClient, Client
from django.urls import reverse

from chatsite.api.redis import get_redis
from ops import health

pytestmark = pytest.mark.django_db

PROBES = ["/health", "/health/database", "/ready", "/live", "/metrics"]
UNUSED_REDIS = "redis://127.0.0.1:6399/0"
SCRAPE_TOKEN = "health-test-scrape-token"


@pytest.fixture
def scrape_token(settings):
    """METRICS_TOKEN set; returns the header that passes it."""
    settings.METRICS_TOKEN = SCRAPE_TOKEN
    return {"HTTP_AUTHORIZATION": f"Bearer {SCRAPE_TOKEN}"}


@pytest.fixture
def dead_redis(settings):
    """REDIS_URL points at a port nothing listens on, for this test only."""
    get_redis.cache_clear()
    settings.REDIS_URL = UNUSED_REDIS
    yield
    get_redis.cache_clear()


def test_url_names_have_no_trailing_slash():
    names = ["health", "health-database", "ready", "live", "metrics"]
    assert [reverse(name) for name in names] == ["/health", "/health/database", "/ready", "/live", "/metrics"]


def test_live_is_200_and_checks_nothing(client):
    resp = client.get("/live")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "alive"
    assert body["uptime_seconds"] >= 0
    assert "no-store" in resp["Cache-Control"]


def test_public_health_says_only_status_per_check(client):
    resp = client.get("/health")
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert set(body) == {"status", "checks"}  # no version, no uptime
    assert body["status"] in ("ok", "degraded")
    assert set(body["checks"]) == {"database", "redis", "celery", "memory", "presence", "circuit_breaker"}
    for name, check in body["checks"].items():
        assert set(check) == {"status"}, name  # no pool stats, latencies or memory figures
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["memory"]["status"] in ("ok", "degraded")


def test_health_details_stay_hidden_with_a_wrong_token_or_address(client, scrape_token, settings):
    assert set(client.get("/health", HTTP_AUTHORIZATION="Bearer wrong").json()) == {"status", "checks"}
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    assert set(client.get("/health").json()) == {"status", "checks"}  # the test client is 127.0.0.1
    assert "version" in client.get("/health", REMOTE_ADDR="10.2.3.4").json()


def test_health_reports_every_check(client, scrape_token):
    resp = client.get("/health", **scrape_token)
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert set(body) == {"status", "version", "uptime_seconds", "checks"}
    assert body["version"] == settings.VERSION
    assert body["status"] in ("ok", "degraded")
    checks = body["checks"]
    assert set(checks) == {"database", "redis", "celery", "memory", "presence", "circuit_breaker"}

    assert checks["database"]["status"] == "ok"
    assert checks["database"]["latency_ms"] >= 0
    assert checks["database"]["vendor"] == "postgresql"
    assert checks["database"]["pool"]["max"] == settings.DB_POOL_MAX_SIZE

    assert checks["redis"]["status"] == "ok"
    assert checks["redis"]["latency_ms"] >= 0

    # The suite runs no Celery worker: that is degraded, not down, and not a 503.
    assert checks["celery"]["status"] in ("ok", "degraded")
    assert isinstance(checks["celery"]["workers"], int)

    assert checks["memory"]["status"] in ("ok", "degraded")
    assert checks["memory"]["rss_bytes"] > 0

    assert checks["presence"] == {"status": "ok", "store": "redis"}


def test_health_database_is_just_the_database_check(client, scrape_token):
    resp = client.get("/health/database", **scrape_token)
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ok"
    assert {"latency_ms", "vendor", "pool"} <= set(body)


def test_public_health_database_has_no_pool_stats(client):
    resp = client.get("/health/database")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


def test_ready_when_database_and_redis_answer(client):
    resp = client.get("/ready")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ready"
    assert {name: c["status"] for name, c in body["checks"].items()} == {"database": "ok", "redis": "ok"}


def test_ready_stays_200_but_degraded_when_redis_is_unreachable(client, dead_redis):
    # Messages are still stored and streams poll the database: instances must stay in rotation.
    started = time.monotonic()
    resp = client.get("/ready")
    assert time.monotonic() - started < health.CHECK_DEADLINE_S + 0.5
    assert resp.status_code == 200
    assert resp["Content-Type"] == "application/json"
    body = resp.json()
    assert body["status"] == "degraded"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["redis"] == {"status": "down", "error": "ConnectionError"}


def test_health_is_200_but_degraded_when_only_redis_is_down(client, dead_redis):
    resp = client.get("/health")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "degraded"
    assert body["checks"]["redis"]["status"] == "down"
    assert body["checks"]["database"]["status"] == "ok"


def test_health_says_presence_runs_on_the_database_when_redis_is_down(client, scrape_token, dead_redis):
    body = client.get("/health", **scrape_token).json()

    assert body["checks"]["presence"]["status"] == "degraded"
    assert body["checks"]["presence"]["store"] == "database"


def test_health_says_presence_is_disabled_when_its_flag_is_off(client, settings):
    settings.PRESENCE_ENABLED = False

    assert client.get("/health").json()["checks"]["presence"] == {"status": "disabled"}


def test_redis_is_disabled_not_down_in_embedded_mode(client, settings):
    get_redis.cache_clear()
    settings.REDIS_URL = ""
    try:
        assert health.check_redis()["status"] == "disabled"
        assert client.get("/ready").status_code == 200
    finally:
        get_redis.cache_clear()


def test_celery_is_ok_in_eager_mode(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    assert health.check_celery() == {"status": "ok", "mode": "eager", "detail": "tasks run in-process"}


def test_overall_status_follows_the_database():
    up, down = {"status": "ok"}, {"status": "down"}
    assert health.overall_status({"database": up, "redis": up}) == "ok"
    assert health.overall_status({"database": up, "redis": {"status": "disabled"}}) == "ok"
    assert health.overall_status({"database": up, "celery": {"status": "degraded"}}) == "degraded"
    assert health.overall_status({"database": down, "redis": up}) == "down"


def test_a_hanging_check_is_cut_off_and_not_started_twice(monkeypatch):
    release = threading.Event()
    calls = []

    def hangs() -> dict:
        calls.append(1)
        release.wait(5)
        return {"status": "ok"}

    monkeypatch.setitem(health.CHECKS, "hangs", hangs)
    try:
        started = time.monotonic()
        first = health.run_checks("hangs", "memory", deadline_s=0.2)
        assert time.monotonic() - started < 1.0
        assert first["hangs"] == {"status": "down", "error": "timeout", "timeout_s": 0.2}
        assert first["memory"]["status"] in ("ok", "degraded")
        # A second probe joins the running check instead of piling another thread on it.
        assert health.run_checks("hangs", deadline_s=0.1)["hangs"]["status"] == "down"
        assert len(calls) == 1
    finally:
        release.set()
        health._in_flight.pop("hangs").result(timeout=5)


def test_probes_answer_plain_http_with_an_unknown_host(settings):
    settings.SECURE_SSL_REDIRECT = True
    client = Client()  # built after the override, so SecurityMiddleware sees it
    internal_host = "10.0.3.7:8000"
    assert internal_host.split(":")[0] not in settings.ALLOWED_HOSTS

    for path in PROBES:
        resp = client.get(path, HTTP_HOST=internal_host)
        assert resp.status_code == 200, (path, resp.status_code, resp.content[:200])
        assert "Location" not in resp

    # The same request to any other path is refused (unknown host) or redirected (plain HTTP).
    assert client.get("/nope", HTTP_HOST=internal_host).status_code == 400
    redirected = client.get("/nope")
    assert redirected.status_code == 301
    assert redirected["Location"].startswith("https://")


def test_probes_only_allow_get_and_head(client):
    assert client.head("/live").status_code == 200
    assert client.post("/live").status_code == 405
    assert client.post("/health").status_code == 405


async def test_probes_on_the_async_path():
    client = AsyncClient()
    resp = await client.get("/ready", headers={"X-Request-ID": "lb-probe-1"})
    assert resp.status_code == 200
    assert resp.json()["status"] == "ready"
    assert resp["X-Request-ID"] == "lb-probe-1"
    resp = await client.get("/health")
    assert resp.status_code == 200
    assert resp.json()["checks"]["database"]["status"] == "ok"
