"""Circuit breakers around PostgreSQL and Redis (seed 004 "Cascading Failures"): real outages
(a TCP proxy in front of the real PostgreSQL, a throwaway redis-server), no mocks."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit, urlunsplit

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.db import OperationalError, connection, transaction
from prometheus_client import REGISTRY
from websockets.sync.client import connect as sync_connect

from chatsite.accounts.models import SecurityEvent
from chatsite.api import circuit, flags, services, throttling
from chatsite.api.circuit import BREAKERS, CircuitOpenError
from chatsite.api.models import CircuitBreakerReset
from chatsite.api.redis import get_redis
from ops import health
from tests.conftest import login
from tests.dm.helpers import opaque_envelopes, open_conversation, party
from tests.factories import UserFactory
from tests.live import live_daphne
from tests.realtime.clients import ws_connect
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _breakers_closed_after():
    yield
    for b in BREAKERS.values():
        b.reset()
    flags.overrides.forget()


def state_metric(dependency: str) -> float:
    return REGISTRY.get_sample_value("circuit_breaker_state", {"dependency": dependency})


def trips_metric(dependency: str) -> float:
    return REGISTRY.get_sample_value("circuit_breaker_trips_total", {"dependency": dependency}) or 0.0


# --- The state machine (real clock) --------------------------------------------------------------


def test_opens_after_n_consecutive_failures_and_then_refuses(settings):
    settings.CIRCUIT_BREAKER_FAILURES = 3
    b = BREAKERS["database"]
    trips = trips_metric("database")
    b.record_failure()
    b.record_failure()
    assert (b.state, b.allow()) == ("closed", True)

    b.record_failure()

    assert (b.state, b.allow()) == ("open", False)
    assert state_metric("database") == 2
    assert trips_metric("database") == trips + 1


def test_a_success_starts_the_count_again(settings):
    settings.CIRCUIT_BREAKER_FAILURES = 2
    b = BREAKERS["database"]
    b.record_failure()
    b.record_success()
    b.record_failure()
    assert b.state == "closed"


def _open(b: circuit.Breaker, settings) -> None:
    for _ in range(settings.CIRCUIT_BREAKER_FAILURES):
        b.record_failure()
    assert b.state == "open"


def test_half_opens_by_itself_after_the_reset_interval_with_one_trial(settings):
    settings.CIRCUIT_BREAKER_FAILURES = 1
    settings.CIRCUIT_BREAKER_RESET_S = 0.3
    b = BREAKERS["redis"]
    _open(b, settings)
    started = time.monotonic()
    while not b.allow():
        assert time.monotonic() - started < 2
        time.sleep(0.02)

    assert time.monotonic() - started >= 0.25
    assert b.state == "half_open" and state_metric("redis") == 1
    assert b.allow() is False  # one trial at a time
    b.record_success()
    assert (b.state, state_metric("redis")) == ("closed", 0)


def test_while_open_a_completed_statement_does_not_close_it(settings):
    """Open means open for CIRCUIT_BREAKER_RESET_S: a statement that completes meanwhile (the flag
    refresher's read, a request already in flight) neither closes it nor shortens Retry-After."""
    settings.CIRCUIT_BREAKER_FAILURES = 1
    settings.CIRCUIT_BREAKER_RESET_S = 30
    b = BREAKERS["database"]
    _open(b, settings)

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")  # a real statement: the execute wrapper reports a success

    assert (b.state, b.allow()) == ("open", False)
    assert b.retry_after_s() >= 29


def test_after_the_interval_a_success_closes_it_without_an_allow_first(settings):
    """A caller that does not ask (a background statement, the /health probe) and succeeds after
    the interval is the trial: the breaker closes by itself."""
    settings.CIRCUIT_BREAKER_FAILURES = 1
    settings.CIRCUIT_BREAKER_RESET_S = 0.2
    b = BREAKERS["database"]
    _open(b, settings)
    time.sleep(0.25)

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")

    assert (b.state, state_metric("database")) == ("closed", 0)


def test_a_failed_trial_opens_it_again(settings):
    settings.CIRCUIT_BREAKER_FAILURES = 1
    settings.CIRCUIT_BREAKER_RESET_S = 0.1
    b = BREAKERS["redis"]
    _open(b, settings)
    time.sleep(0.15)
    assert b.allow() is True

    b.record_failure()

    assert (b.state, b.allow()) == ("open", False)


def test_a_statement_timeout_is_not_a_database_outage():
    with pytest.raises(OperationalError) as caught, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = 1")
        cursor.execute("SELECT pg_sleep(1)")
    assert circuit.is_database_outage(caught.value) is False


# --- PostgreSQL made unreachable under a live server ---------------------------------------------


def _get(url: str, token: str) -> tuple[int, dict, dict, float]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    started = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (local URL)
            status, headers, raw = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        status, headers, raw = err.code, dict(err.headers), err.read()
    return status, headers, json.loads(raw or b"{}"), time.monotonic() - started


def _via(proxy: TcpProxy) -> str:
    parts = urlsplit(os.environ["DATABASE_URL"])
    host = f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else f"127.0.0.1:{proxy.port}"
    if parts.password:
        host = f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=host, path="/" + connection.settings_dict["NAME"]))


def test_database_outage_opens_the_breaker_fails_fast_with_retry_after_and_recovers():
    token = login(UserFactory())
    db = urlsplit(os.environ["DATABASE_URL"])
    proxy = TcpProxy(db.hostname or "127.0.0.1", db.port or 5432)
    proxy.start()
    pool_timeout_s, reset_s, failures = 2.0, 3.0, 2
    env = {
        "DATABASE_URL": _via(proxy),
        "DB_POOL_TIMEOUT": str(pool_timeout_s),
        "DB_CONNECT_TIMEOUT_S": "1",
        "CIRCUIT_BREAKER_FAILURES": str(failures),
        "CIRCUIT_BREAKER_RESET_S": str(reset_s),
        "METRICS_TOKEN": "scrape-token",
    }
    try:
        with live_daphne(env) as server:
            groups, health = server.http + "/groups", server.http + "/health"
            assert _get(groups, token)[0] == 200

            proxy.stop()
            # The first N requests each wait for a connection and fail: 503, counted.
            for _ in range(failures):
                status, _headers, body, _elapsed = _get(groups, token)
                assert (status, body["code"]) == (503, "DATABASE_UNAVAILABLE")
            # Open: refused at once, with when to come back.
            status, headers, body, elapsed = _get(groups, token)
            assert (status, body["code"]) == (503, "DATABASE_UNAVAILABLE")
            assert 1 <= int(headers["Retry-After"]) <= reset_s
            assert elapsed < pool_timeout_s / 4, elapsed  # measured: a few milliseconds
            checks = _get(health, "scrape-token")[2]["checks"]
            assert checks["circuit_breaker"]["status"] == "degraded"
            assert checks["circuit_breaker"]["database"]["state"] == "open"

            proxy.start()
            # Still open (fail fast) until the reset interval has passed, then a trial closes it.
            started = time.monotonic()
            while (answer := _get(groups, token))[0] != 200:
                assert answer[2]["code"] == "DATABASE_UNAVAILABLE"
                assert time.monotonic() - started < 60, "the breaker never closed"
                time.sleep(0.2)
            checks = _get(health, "scrape-token")[2]["checks"]
            assert checks["circuit_breaker"]["database"]["state"] == "closed"
            req = urllib.request.Request(
                server.http + "/metrics", headers={"Authorization": "Bearer scrape-token"}
            )
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (local URL)
                exposition = resp.read().decode()
            assert 'circuit_breaker_state{dependency="database"} 0.0' in exposition
            assert 'circuit_breaker_trips_total{dependency="database"} 1.0' in exposition
    finally:
        proxy.stop()


@pytest.mark.live_server_process
def test_a_frame_that_meets_a_database_outage_gets_database_unavailable_and_the_stream_stays():
    """/ws: a frame handler whose database is gone answers an `error` frame with the REST code
    (DATABASE_UNAVAILABLE), counted by the breaker; the stream stays open."""
    alice, bob = party(), party()
    conversation = open_conversation(alice, bob)
    db = urlsplit(os.environ["DATABASE_URL"])
    proxy = TcpProxy(db.hostname or "127.0.0.1", db.port or 5432)
    proxy.start()
    env = {"DATABASE_URL": _via(proxy), "DB_POOL_TIMEOUT": "2", "DB_CONNECT_TIMEOUT_S": "1"}
    try:
        with live_daphne(env) as server:
            url = server.http.replace("http://", "ws://") + "/ws"
            headers = {"Authorization": f"Bearer {alice.token}"}
            with sync_connect(url, additional_headers=headers, open_timeout=10) as ws:
                assert json.loads(ws.recv(timeout=10))["type"] == "hello"
                time.sleep(1)  # the stream's own opening work (device last-seen) is done
                ws.send(json.dumps({"type": "ping", "ref": "opened"}))
                _frame_with_ref(ws, "opened")
                proxy.stop()
                frame = {
                    "type": "dm.send",
                    "ref": "outage-1",
                    "conversation_id": conversation,
                    "client_message_id": "outage-1",
                    "envelopes": opaque_envelopes(bob.device_id),
                }
                ws.send(json.dumps(frame))
                reply = _frame_with_ref(ws, "outage-1")
                ws.send(json.dumps({"type": "ping", "ref": "still-there"}))
                pong = _frame_with_ref(ws, "still-there")
    finally:
        proxy.stop()

    assert (reply["type"], reply["code"]) == ("error", "DATABASE_UNAVAILABLE")
    assert pong["type"] == "pong"


def _frame_with_ref(ws, ref: str, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if frame.get("ref") == ref:
            return frame


# --- Redis stopped (a throwaway redis-server) ----------------------------------------------------


def test_redis_outage_opens_the_breaker_and_redis_calls_fail_fast(throwaway_redis, settings):
    settings.CIRCUIT_BREAKER_FAILURES = 3
    settings.CIRCUIT_BREAKER_RESET_S = 30
    throwaway_redis.stop()

    for n in range(3):
        decision = throttling.hit("circuit-test", n, limit=5, window_seconds=60)
        assert decision.allowed  # the per-process fallback answers

    assert BREAKERS["redis"].state == "open"
    with pytest.raises(CircuitOpenError):
        get_redis().ping()  # no socket: refused by the breaker itself


def test_a_redis_pool_running_out_in_this_process_does_not_open_the_breaker(settings):
    """A burst that exhausts redis-py's own pool (150 simultaneous group joins did, in the suite)
    says nothing about Redis: the breaker stays closed and Redis stays in use."""
    import redis as redis_lib

    settings.CIRCUIT_BREAKER_FAILURES = 3
    pool = redis_lib.ConnectionPool.from_url(settings.REDIS_URL, max_connections=1)
    client = circuit.BreakerRedis(connection_pool=pool)
    held = pool.get_connection()
    try:
        for _ in range(5):
            with pytest.raises(redis_lib.ConnectionError, match="Too many connections"):
                client.ping()
    finally:
        pool.release(held)
        pool.disconnect()

    assert BREAKERS["redis"].state == "closed"
    assert client.ping() is True


async def test_streams_report_relay_lag_while_the_redis_breaker_is_open(throwaway_redis, settings):
    settings.CIRCUIT_BREAKER_FAILURES = 2
    settings.CIRCUIT_BREAKER_RESET_S = 0.5
    settings.WS_PING_INTERVAL_MS = 300
    settings.RELAY_HEALTH_CHECK_INTERVAL_MS = 50
    settings.RELAY_POLL_INTERVAL_MS = 300
    user = await database_sync_to_async(UserFactory)()
    token = await database_sync_to_async(login)(user)
    comm = await ws_connect(token)

    throwaway_redis.stop()
    frame = await _heartbeat(comm, relay_lag=True)
    assert frame["relay_lag"] is True
    deadline = time.monotonic() + 5
    while BREAKERS["redis"].state == "closed":
        assert time.monotonic() < deadline, "the redis breaker never opened"
        await _heartbeat(comm, relay_lag=True)

    throwaway_redis.start()
    await _heartbeat(comm, relay_lag=False, timeout=10)
    assert BREAKERS["redis"].state == "closed"
    await comm.disconnect()


async def _heartbeat(comm, *, relay_lag: bool, timeout: float = 5) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = await comm.receive_json_from(timeout=timeout)
        if frame["type"] == "heartbeat" and frame["relay_lag"] is relay_lag:
            return frame
    raise AssertionError(f"no heartbeat with relay_lag={relay_lag}")


# --- Reset: command, admin, and every process -----------------------------------------------------


def test_reset_service_closes_this_process_audits_and_bumps_the_generation(settings):
    settings.CIRCUIT_BREAKER_FAILURES = 1
    _open(BREAKERS["database"], settings)
    staff = UserFactory(is_staff=True)

    services.circuit_breaker_reset(dependency="database", by=staff, reason="false alarm")

    assert BREAKERS["database"].state == "closed"
    assert CircuitBreakerReset.objects.get(dependency="database").generation == 1
    event = SecurityEvent.objects.get(kind=SecurityEvent.Kind.CIRCUIT_BREAKER_RESET)
    assert event.data == {"by": staff.pk, "reason": "false alarm", "dependencies": ["database"]}


def test_another_process_reset_reaches_this_one_through_the_refresher(settings):
    settings.CIRCUIT_BREAKER_FAILURES = 1
    CircuitBreakerReset.objects.create(dependency="redis", generation=4)
    assert flags.overrides.refresh()  # the baseline this process has seen
    _open(BREAKERS["redis"], settings)

    # What `circuit_breaker reset` in another process writes.
    CircuitBreakerReset.objects.filter(dependency="redis").update(generation=5)
    assert flags.overrides.refresh()

    assert BREAKERS["redis"].state == "closed"


def test_the_first_reset_ever_reaches_a_process_that_read_the_empty_table(settings):
    """Before any reset circuit_breaker_resets has no row; a process that read it so must take the
    first reset (generation 1) as a reset, not as its baseline."""
    settings.CIRCUIT_BREAKER_FAILURES = 1
    settings.CIRCUIT_BREAKER_RESET_S = 30
    circuit.forget_reset_generations()  # as a process that has not read the table yet
    assert not CircuitBreakerReset.objects.exists()
    assert flags.overrides.refresh()  # reads the empty table
    _open(BREAKERS["redis"], settings)

    # What `manage.py circuit_breaker reset` (another, short-lived process) writes the first time.
    CircuitBreakerReset.objects.create(dependency="redis", generation=1)
    assert flags.overrides.refresh()

    assert BREAKERS["redis"].state == "closed"


def test_the_reset_service_writes_generation_1_for_a_first_reset_and_2_for_the_next():
    services.circuit_breaker_reset(dependency="redis", by=None, reason="first")
    services.circuit_breaker_reset(dependency="redis", by=None, reason="second")

    assert CircuitBreakerReset.objects.get(dependency="redis").generation == 2


def test_command_status_and_reset(settings, capsys):
    settings.CIRCUIT_BREAKER_FAILURES = 1
    _open(BREAKERS["redis"], settings)
    call_command("circuit_breaker", "status")
    assert "redis     open" in capsys.readouterr().out

    call_command("circuit_breaker", "reset", "--dependency", "redis", "--reason", "redis back", "--dry-run")
    assert "Would reset the redis circuit breaker(s)" in capsys.readouterr().out
    assert not CircuitBreakerReset.objects.exists()

    call_command("circuit_breaker", "reset", "--dependency", "redis", "--reason", "redis back", "--yes")
    assert BREAKERS["redis"].state == "closed"
    assert SecurityEvent.objects.filter(kind=SecurityEvent.Kind.CIRCUIT_BREAKER_RESET).count() == 1


def test_admin_reset_button_confirms_with_a_reason_then_resets(client, settings):
    settings.CIRCUIT_BREAKER_FAILURES = 1
    staff = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)
    _open(BREAKERS["database"], settings)
    url = "/admin/api/featureflag/circuit-breaker/reset/?dependency=database"
    page = client.get("/admin/api/featureflag/").content.decode()
    assert 'data-dependency="database"' in page and "open" in page

    assert b'name="reason"' in client.get(url).content
    done = client.post(url, {"confirm": "yes", "reason": "db is back"})

    assert done.status_code == 302
    assert BREAKERS["database"].state == "closed"
    event = SecurityEvent.objects.get(kind=SecurityEvent.Kind.CIRCUIT_BREAKER_RESET)
    assert (event.data["by"], event.data["dependencies"]) == (staff.pk, ["database"])


def test_health_reports_the_breakers(client, settings):
    assert client.get("/health").json()["checks"]["circuit_breaker"]["status"] == "ok"
    settings.CIRCUIT_BREAKER_FAILURES = 1
    _open(BREAKERS["redis"], settings)

    assert client.get("/health").json()["checks"]["circuit_breaker"]["status"] == "degraded"


def test_a_breaker_503_is_counted_in_the_responses_by_status(client, settings):
    """The fail-fast 503 passes PrometheusAfterMiddleware, so error-rate alerts see the outage."""
    settings.CIRCUIT_BREAKER_FAILURES = 1
    settings.CIRCUIT_BREAKER_RESET_S = 30
    token = login(UserFactory())
    _open(BREAKERS["database"], settings)
    sample = "django_http_responses_total_by_status_total"
    before = REGISTRY.get_sample_value(sample, {"status": "503"}) or 0.0

    resp = client.get("/groups", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert (resp.status_code, resp.json()["code"]) == (503, "DATABASE_UNAVAILABLE")
    assert REGISTRY.get_sample_value(sample, {"status": "503"}) == before + 1


def test_the_health_probe_asks_redis_itself_while_the_redis_breaker_is_open(settings):
    """An open breaker is not a Redis outage: /health and redis_ready must not say "down" (the
    RedisDown alert) without contacting Redis."""
    settings.CIRCUIT_BREAKER_FAILURES = 1
    settings.CIRCUIT_BREAKER_RESET_S = 30
    _open(BREAKERS["redis"], settings)

    assert health.check_redis()["status"] == "ok"
    assert BREAKERS["redis"].state == "open"  # within the open interval the success is ignored


def test_the_health_probe_reports_its_success_to_the_breaker_after_the_interval(settings):
    settings.CIRCUIT_BREAKER_FAILURES = 1
    settings.CIRCUIT_BREAKER_RESET_S = 0.2
    _open(BREAKERS["redis"], settings)
    time.sleep(0.25)

    assert health.check_redis()["status"] == "ok"

    assert BREAKERS["redis"].state == "closed"


def test_the_health_probe_counts_its_failures(throwaway_redis, settings):
    settings.CIRCUIT_BREAKER_FAILURES = 2
    settings.CIRCUIT_BREAKER_RESET_S = 30
    throwaway_redis.stop()

    assert health.check_redis()["status"] == "down"
    assert health.check_redis()["status"] == "down"

    assert BREAKERS["redis"].state == "open"


def test_while_open_api_requests_get_503_with_retry_after_and_the_admin_still_loads(client, settings):
    settings.CIRCUIT_BREAKER_FAILURES = 1
    settings.CIRCUIT_BREAKER_RESET_S = 30
    token = login(UserFactory())
    staff = UserFactory(is_staff=True, is_superuser=True)
    _open(BREAKERS["database"], settings)

    resp = client.get("/groups", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert (resp.status_code, resp.json()["code"]) == (503, "DATABASE_UNAVAILABLE")
    assert 1 <= int(resp["Retry-After"]) <= 30
    client.force_login(staff)
    assert client.get("/admin/api/featureflag/").status_code == 200
