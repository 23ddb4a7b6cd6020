"""Shared fixtures. Tests run against the real PostgreSQL and Redis named by DATABASE_URL and
REDIS_URL (scripts/test.sh sets the localhost defaults and checks both are up)."""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.test import AsyncClient, Client
from rest_framework.test import APIClient

from chatsite.accounts import services as account_services
from chatsite.api import throttling
from chatsite.api.redis import get_redis
from tests import openapi, run_lock
from tests.factories import DEFAULT_PASSWORD, UserFactory
from tests.realtime.clients import disconnect_leftovers
from tests.redis_server import RedisProcess, relay_on


def pytest_sessionstart(session):
    refused = run_lock.acquire()
    if refused:
        pytest.exit(refused, returncode=3)


def pytest_sessionfinish(session, exitstatus):
    run_lock.release()


@pytest.fixture(autouse=True)
def _clean_redis(_closed_circuit_breakers):
    """Each test starts with empty rate-limit windows and stream registries."""
    client = get_redis()
    if client is not None:
        client.flushdb()
    throttling.reset_local()
    yield


@pytest.fixture(autouse=True)
async def _disconnect_communicators():
    """Disconnect any WebSocket communicator a test left running, also when an assertion failed
    before the test's own disconnect (tests/realtime/clients.py records each one)."""
    yield
    await disconnect_leftovers()


@pytest.fixture(autouse=True)
def _live_servers_quiet_before_flush(request, _django_db_marker):
    """A test with a live daphne ends while that server may still be finishing a stream's
    clean-up (presence writes user_presence on connect and disconnect). pytest-django's flush
    (one TRUNCATE of every table) would then deadlock with that transaction and fail the
    teardown. Set up after the database fixture, this is torn down before its flush: it waits
    (at most LIVE_QUIET_WAIT_S) until no other backend on the test database is inside a
    transaction."""
    yield
    if request.node.get_closest_marker("live_server_process") is None:
        return
    from django.db import connection

    deadline = time.monotonic() + LIVE_QUIET_WAIT_S
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction')"
            )
            if cursor.fetchone()[0] == 0:
                return
        time.sleep(0.05)


LIVE_QUIET_WAIT_S = 5.0


@pytest.fixture(scope="session")
def _openapi_checker() -> openapi.OpenApiChecker:
    return openapi.checker()


@pytest.fixture(autouse=True)
def _responses_match_the_openapi_schema(_openapi_checker, monkeypatch):
    """Every response a test client gets must be one the OpenAPI schema documents: path, method,
    status, content type and body (tests/openapi.py says what is checked and what is not)."""
    request, arequest = Client.request, AsyncClient.request

    def checked_request(self, **kwargs):
        response = request(self, **kwargs)
        _openapi_checker.check_response(response)
        return response

    async def checked_arequest(self, **kwargs):
        response = await arequest(self, **kwargs)
        _openapi_checker.check_response(response)
        return response

    monkeypatch.setattr(Client, "request", checked_request)
    monkeypatch.setattr(AsyncClient, "request", checked_arequest)


@pytest.fixture(autouse=True)
def _closed_circuit_breakers():
    """Each test starts with both circuit breakers closed (their state is per process)."""
    from chatsite.api.circuit import BREAKERS

    for b in BREAKERS.values():
        b.reset()


@pytest.fixture(autouse=True)
def _plain_http(settings):
    """Test clients speak plain HTTP, as the app sees traffic behind the TLS-terminating load
    balancer; with DJANGO_DEBUG=false every request would otherwise be a 301 to https://."""
    settings.SECURE_SSL_REDIRECT = False


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """PBKDF2's cost is the point in production and ~0.3 s per user or log-in in tests."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _static_files_without_collectstatic(settings):
    """Production's manifest storage needs a `collectstatic` run, or every page that names a
    static file (the admin, /schema/docs/) is a 500. In-process tests use plain names instead;
    tests/ops/test_admin_static_browser.py collects and serves the real thing from a real daphne."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def user_factory():
    return UserFactory


def login(user, *, password: str = DEFAULT_PASSWORD) -> str:
    """Open a session through the service the API uses and return its bearer token."""
    _session, token = account_services.session_login(username=user.username, password=password)
    return token


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {login(user)}")
    return client


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def auth_client(user) -> APIClient:
    return client_for(user)


def assert_api_error(resp, *, code: str, status: int) -> dict:
    """The response is the {"code", "detail"} envelope with the runbook's status."""
    assert resp.status_code == status, (resp.status_code, getattr(resp, "content", b"")[:500])
    assert resp["Content-Type"].startswith("application/json"), resp["Content-Type"]
    body = resp.json()
    assert body["code"] == code, body
    assert isinstance(body["detail"], str) and body["detail"], body
    return body


@pytest.fixture
def throwaway_redis():
    """A redis-server this test owns (tests/redis_server.py), every Redis user of the process
    pointed at it: the test may really stop and start it."""
    server = RedisProcess()
    server.start()
    try:
        with relay_on(server):
            yield server
    finally:
        server.stop()


@pytest.fixture
def redis_required():
    if not settings.REDIS_URL:
        pytest.fail("REDIS_URL must be set: tests run against a real Redis")
    return get_redis()


@pytest.fixture(scope="session", autouse=True)
def _close_connection_pools(django_db_setup, django_db_blocker):
    """Close psycopg pools before the test database is dropped (pooled connections opened by
    worker threads would otherwise keep it "accessed by other users")."""
    yield
    from django.db import connections

    from chatsite.api.flags import overrides

    overrides.stop()  # the flag refresher thread would reopen a pool (chatsite/api/flags.py)
    with django_db_blocker.unblock():
        for conn in connections.all():
            if hasattr(conn, "close_pool"):
                conn.close_pool()
