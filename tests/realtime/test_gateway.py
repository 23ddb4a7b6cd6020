"""The realtime gateway on /ws: authentication, origin check, frames, seed 003's limits,
ForceDisconnect on revocation (seed 002), heartbeats and slow consumers.

The whole ASGI application is driven in-process with the real Redis channel layer; the DB is
transactional so the consumer's threads see the rows the test commits.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import connection, transaction
from prometheus_client import REGISTRY

from chatsite.accounts import services as account_services
from chatsite.accounts.models import Session
from chatsite.accounts.tickets import stream_ticket_issue
from chatsite.asgi import application
from chatsite.realtime import consumers, registry, relay
from chatsite.realtime.limits import connections
from chatsite.realtime.names import user_group
from tests.conftest import login
from tests.factories import UserFactory
from tests.realtime.helpers import Communicator

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 2


@pytest.fixture(autouse=True)
def _fresh_relay_health():
    """The relay's health is per process: an earlier outage test must not leak relay_lag."""
    relay.health.ok = True
    relay.health.checked_at = 0.0
    yield
    relay.health.ok = True
    relay.health.checked_at = 0.0


@pytest.fixture(autouse=True)
def _no_leaked_connection_slots():
    """Every test disconnects what it opened, so the per-process admission counters return to 0."""
    yield
    leaked = (connections.total, dict(connections.per_ip))
    connections.total = 0  # reset anyway, so one failure does not cascade into the next tests
    connections.per_ip.clear()
    assert leaked == (0, {}), f"connection slots not released: {leaked}"


# --- helpers --------------------------------------------------------------------------------


async def new_user_and_token():
    user = await database_sync_to_async(UserFactory)()
    return user, await database_sync_to_async(login)(user)


def communicator(
    token: str | None = None, *, query: str = "", origin: str | None = None, client_ip: str | None = None
) -> Communicator:
    headers = []
    if token is not None and not query:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    comm = Communicator(application, f"/ws{query}", headers=headers)
    if client_ip is not None:
        comm.scope["client"] = (client_ip, 50000)  # read lazily, when the app starts
    return comm


async def open_ws(token: str, **kwargs) -> tuple[Communicator, dict[str, Any]]:
    """Connect and read the opening frames; returns the communicator and the hello frame."""
    comm = communicator(token, **kwargs)
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected
    hello = await comm.receive_json_from(timeout=TIMEOUT)
    assert hello["type"] == "hello", hello
    heartbeat = await comm.receive_json_from(timeout=TIMEOUT)
    assert heartbeat["type"] == "heartbeat", heartbeat
    return comm, hello


async def until_closed(comm: Communicator, timeout: float = TIMEOUT) -> tuple[int, list[dict]]:
    """Read frames until the server closes; returns the close code and the frames seen."""
    frames = []
    deadline = time.monotonic() + timeout
    while True:
        out = await comm.receive_output(timeout=max(0.01, deadline - time.monotonic()))
        if out["type"] == "websocket.close":
            return out["code"], frames
        frames.append(json.loads(out["text"]))


async def assert_alive(comm: Communicator) -> None:
    await comm.send_json_to({"type": "ping", "ref": "alive?"})
    frame = await comm.receive_json_from(timeout=TIMEOUT)
    while frame["type"] == "heartbeat":
        frame = await comm.receive_json_from(timeout=TIMEOUT)
    assert frame == {"type": "pong", "ref": "alive?"}


async def rejected_count(reason: str) -> float:
    # In a thread: collecting REGISTRY also runs collectors that read the database.
    value = await database_sync_to_async(REGISTRY.get_sample_value)(
        "ws_connection_rejected_total", {"reason": reason}
    )
    return value or 0.0


# --- connecting -----------------------------------------------------------------------------


async def test_bearer_header_connect_gets_hello_then_heartbeat_without_relay_lag():
    user, token = await new_user_and_token()
    comm = communicator(token)

    connected, _ = await comm.connect(timeout=TIMEOUT)

    assert connected
    hello = await comm.receive_json_from(timeout=TIMEOUT)
    assert hello["type"] == "hello"
    assert hello["user_id"] == user.pk
    assert hello["heartbeat_interval_ms"] > 0
    heartbeat = await comm.receive_json_from(timeout=TIMEOUT)
    assert heartbeat["type"] == "heartbeat"
    assert heartbeat["relay_lag"] is False
    assert await comm.receive_nothing()
    await comm.disconnect()


async def test_consumer_finishes_promptly_when_its_client_leaves():
    comm = communicator("not-a-real-token")
    await comm.connect(timeout=TIMEOUT)
    await until_closed(comm)

    await comm.send_input({"type": "websocket.disconnect", "code": 1000})

    done, _ = await asyncio.wait([comm.future], timeout=0.5)
    assert done, "the consumer is still running after its client left"
    await comm.disconnect()


async def test_layer_receive_ends_even_if_a_cancellation_is_swallowed():
    # Regression: on Python 3.11 asyncio.wait_for (inside redis-py's connect) can swallow a
    # cancellation; channels_redis then polled BZPOPMIN for ever and the consumer never ended.
    async def receive_that_swallows_one_cancel():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            pass  # what 3.11's wait_for does when its inner future completed meanwhile
        await asyncio.sleep(10)  # ...and the layer goes on waiting for a message
        return {"type": "never"}

    task = asyncio.ensure_future(consumers.resilient_receive(receive_that_swallows_one_cancel, {}))
    await asyncio.sleep(0.01)

    task.cancel()

    done, _ = await asyncio.wait([task], timeout=0.5)
    assert done and task.cancelled()


async def test_ticket_query_parameter_connects():
    user, token = await new_user_and_token()
    session = await database_sync_to_async(Session.objects.get)(user=user)
    ticket, _ = await database_sync_to_async(stream_ticket_issue)(session=session)

    comm, hello = await open_ws(token, query=f"?ticket={ticket}")

    assert hello["user_id"] == user.pk
    await comm.disconnect()


async def test_no_token_is_closed_with_4401():
    before = await rejected_count("unauthenticated")
    comm = communicator()
    await comm.connect(timeout=TIMEOUT)

    code, frames = await until_closed(comm)

    assert code == 4401
    assert [f["type"] for f in frames] == ["closing"]
    assert await rejected_count("unauthenticated") == before + 1
    await comm.disconnect()


async def test_invalid_token_is_closed_with_4401():
    comm = communicator("not-a-real-token")
    await comm.connect(timeout=TIMEOUT)

    code, _ = await until_closed(comm)

    assert code == 4401
    await comm.disconnect()


async def test_browser_origin_not_allowed_is_refused_at_handshake():
    _, token = await new_user_and_token()
    before = await rejected_count("origin")
    comm = communicator(token, origin="https://evil.example")

    connected, _ = await comm.connect(timeout=TIMEOUT)

    assert connected is False
    assert await rejected_count("origin") == before + 1
    await comm.disconnect()


async def test_native_client_without_origin_is_accepted():
    _, token = await new_user_and_token()

    comm, _ = await open_ws(token)  # no Origin header at all

    await assert_alive(comm)
    await comm.disconnect()


async def test_allowed_browser_origin_is_accepted():
    _, token = await new_user_and_token()

    comm, _ = await open_ws(token, origin="http://localhost")

    await assert_alive(comm)
    await comm.disconnect()


async def test_origin_in_ws_allowed_origins_is_accepted(settings):
    settings.WS_ALLOWED_ORIGINS = ["https://app.example"]
    _, token = await new_user_and_token()

    comm, _ = await open_ws(token, origin="https://app.example")

    await comm.disconnect()


# --- frames ---------------------------------------------------------------------------------


async def test_ping_gets_pong_with_ref_echoed():
    _, token = await new_user_and_token()
    comm, _ = await open_ws(token)

    await comm.send_json_to({"type": "ping", "ref": "r-1"})

    assert await comm.receive_json_from(timeout=TIMEOUT) == {"type": "pong", "ref": "r-1"}
    assert await comm.receive_nothing()
    await comm.disconnect()


async def test_unknown_frame_type_gets_bad_request_error_with_ref():
    _, token = await new_user_and_token()
    comm, _ = await open_ws(token)

    await comm.send_json_to({"type": "no.such.frame", "ref": 7})

    frame = await comm.receive_json_from(timeout=TIMEOUT)
    assert frame["type"] == "error"
    assert frame["code"] == "BAD_REQUEST"
    assert frame["ref"] == 7
    assert frame["detail"]
    await assert_alive(comm)
    await comm.disconnect()


async def test_non_json_frame_gets_error_and_stays_open():
    _, token = await new_user_and_token()
    comm, _ = await open_ws(token)

    await comm.send_to(text_data="this is not json")

    frame = await comm.receive_json_from(timeout=TIMEOUT)
    assert frame["type"] == "error"
    assert frame["code"] == "BAD_REQUEST"
    await assert_alive(comm)
    await comm.disconnect()


NESTED_FRAME = '{"type":"ping","ref":' + "[" * 3000 + "]" * 3000 + "}"


async def test_deeply_nested_frame_gets_validation_error_and_stays_open():
    _, token = await new_user_and_token()
    comm, _ = await open_ws(token)
    try:
        await comm.send_to(text_data=NESTED_FRAME)

        frame = await comm.receive_json_from(timeout=TIMEOUT)
        assert frame["type"] == "error"
        assert frame["code"] == "VALIDATION_ERROR"
        await assert_alive(comm)
    finally:
        await comm.disconnect()


async def test_json_without_type_gets_error():
    _, token = await new_user_and_token()
    comm, _ = await open_ws(token)

    await comm.send_json_to(["not", "an", "object"])

    frame = await comm.receive_json_from(timeout=TIMEOUT)
    assert (frame["type"], frame["code"]) == ("error", "BAD_REQUEST")
    await comm.disconnect()


# --- seed 003 limits ------------------------------------------------------------------------


async def test_over_message_rate_gets_rate_limited_and_close_4429(settings):
    settings.MAX_MSGS_PER_10S = 5
    _, token = await new_user_and_token()
    comm, _ = await open_ws(token)
    before = await rejected_count("msg_rate")

    for i in range(6):
        await comm.send_json_to({"type": "ping", "ref": i})
    code, frames = await until_closed(comm)

    assert code == 4429
    assert [f["type"] for f in frames if f["type"] != "heartbeat"] == ["pong"] * 5 + ["error", "closing"]
    error = next(f for f in frames if f["type"] == "error")
    assert error["code"] == "RATE_LIMITED"
    assert await rejected_count("msg_rate") == before + 1
    await comm.disconnect()


async def test_over_byte_rate_gets_rate_limited_and_close_4429(settings):
    settings.MAX_BYTES_PER_10S = 200
    _, token = await new_user_and_token()
    comm, _ = await open_ws(token)
    before = await rejected_count("byte_rate")

    await comm.send_json_to({"type": "ping", "ref": "a", "pad": "x" * 100})
    assert (await comm.receive_json_from(timeout=TIMEOUT))["type"] == "pong"
    await comm.send_json_to({"type": "ping", "ref": "b", "pad": "x" * 100})
    code, frames = await until_closed(comm)

    assert code == 4429
    assert [f["type"] for f in frames] == ["error", "closing"]
    assert frames[0]["code"] == "RATE_LIMITED"
    assert await rejected_count("byte_rate") == before + 1
    await comm.disconnect()


async def test_oversized_frame_gets_4413_even_when_the_byte_budget_is_also_spent(settings):
    settings.WS_MAX_FRAME_BYTES = 300
    settings.MAX_BYTES_PER_10S = 400
    _, token = await new_user_and_token()
    comm, _ = await open_ws(token)

    await comm.send_json_to({"type": "ping", "ref": "a", "pad": "x" * 200})
    assert (await comm.receive_json_from(timeout=TIMEOUT))["type"] == "pong"
    await comm.send_json_to({"type": "ping", "ref": "b", "pad": "x" * 400})  # over both limits
    code, frames = await until_closed(comm)

    assert code == 4413
    assert frames[0]["code"] == "PAYLOAD_TOO_LARGE"
    await comm.disconnect()


async def test_second_connection_from_same_ip_over_limit_is_closed_4429(settings):
    settings.MAX_CONNS_PER_IP = 1
    _, token = await new_user_and_token()
    first, _ = await open_ws(token, client_ip="203.0.113.7")
    before = await rejected_count("ip_limit")

    second = communicator(token, client_ip="203.0.113.7")
    connected, _ = await second.connect(timeout=TIMEOUT)
    code, _ = await until_closed(second)

    assert connected
    assert code == 4429
    assert await rejected_count("ip_limit") == before + 1
    await assert_alive(first)
    # Another address is not affected.
    other, _ = await open_ws(token, client_ip="203.0.113.8")
    await other.disconnect()
    await second.disconnect()
    await first.disconnect()


async def test_ip_slot_is_released_on_disconnect(settings):
    settings.MAX_CONNS_PER_IP = 1
    _, token = await new_user_and_token()
    first, _ = await open_ws(token, client_ip="203.0.113.9")
    await first.disconnect()

    again, _ = await open_ws(token, client_ip="203.0.113.9")

    await again.disconnect()


async def test_over_total_connections_is_closed_4503(settings):
    settings.MAX_TOTAL_CONNECTIONS = 1
    _, token = await new_user_and_token()
    first, _ = await open_ws(token)

    second = communicator(token)
    await second.connect(timeout=TIMEOUT)
    code, _ = await until_closed(second)

    assert code == 4503
    await second.disconnect()
    await first.disconnect()


async def test_fourth_stream_of_a_user_closes_the_oldest_with_4429(settings):
    settings.REALTIME_MAX_STREAMS_PER_USER = 3
    _, token = await new_user_and_token()
    before = await rejected_count("stream_limit")
    comms = []
    for _ in range(3):
        comms.append((await open_ws(token))[0])

    comms.append((await open_ws(token))[0])

    code, _ = await until_closed(comms[0])
    assert code == 4429
    assert await rejected_count("stream_limit") == before + 1
    for comm in comms[1:]:
        await assert_alive(comm)
    for comm in comms:
        await comm.disconnect()


async def test_second_stream_of_the_same_device_replaces_the_first_with_4409():
    user, token = await new_user_and_token()
    await database_sync_to_async(Session.objects.filter(user=user).update)(device_id=uuid.uuid4())
    first, hello = await open_ws(token)
    assert hello["device_id"] is not None

    second, _ = await open_ws(token)

    code, _ = await until_closed(first)
    assert code == 4409
    await assert_alive(second)
    await first.disconnect()
    await second.disconnect()


# --- delivery -------------------------------------------------------------------------------


async def test_publish_to_user_is_delivered_only_after_commit():
    user, token = await new_user_and_token()
    comm, _ = await open_ws(token)
    published, release = threading.Event(), threading.Event()

    def publish_in_transaction():
        with transaction.atomic():
            relay.publish_to_user(user.pk, {"type": "test.event", "n": 1})
            published.set()
            release.wait(TIMEOUT)

    # thread_sensitive=False: the transaction must not hold the thread the consumer's ORM uses;
    # database_sync_to_async closes the thread's connection afterwards, as the consumer's do.
    task = asyncio.ensure_future(database_sync_to_async(publish_in_transaction, thread_sensitive=False)())
    await asyncio.to_thread(published.wait, TIMEOUT)

    assert await comm.receive_nothing(timeout=0.3)  # still inside the transaction
    release.set()
    await task
    assert await comm.receive_json_from(timeout=TIMEOUT) == {"type": "test.event", "n": 1}
    await comm.disconnect()


async def test_publish_inside_a_rolled_back_transaction_is_never_delivered():
    user, token = await new_user_and_token()
    comm, _ = await open_ws(token)

    def publish_then_roll_back():
        with transaction.atomic():
            relay.publish_to_user(user.pk, {"type": "test.event"})
            transaction.set_rollback(True)

    await database_sync_to_async(publish_then_roll_back, thread_sensitive=False)()
    await database_sync_to_async(relay.publish_to_user)(user.pk, {"type": "test.marker"})

    # The marker, published later, arrives first and alone: the rolled-back event never will.
    assert await comm.receive_json_from(timeout=TIMEOUT) == {"type": "test.marker"}
    assert await comm.receive_nothing(timeout=0.2)
    await comm.disconnect()


async def test_publish_to_user_reaches_every_stream_of_that_user_only():
    user, token = await new_user_and_token()
    _, other_token = await new_user_and_token()
    a, _ = await open_ws(token)
    b, _ = await open_ws(token)
    stranger, _ = await open_ws(other_token)

    await database_sync_to_async(relay.publish_to_user)(user.pk, {"type": "test.event"})

    assert await a.receive_json_from(timeout=TIMEOUT) == {"type": "test.event"}
    assert await b.receive_json_from(timeout=TIMEOUT) == {"type": "test.event"}
    assert await stranger.receive_nothing(timeout=0.3)
    for comm in (a, b, stranger):
        await comm.disconnect()


# --- ForceDisconnect (seed 002) -------------------------------------------------------------


async def test_revoking_a_session_closes_its_socket_with_4401_within_a_second():
    user, token = await new_user_and_token()
    other_token = await database_sync_to_async(login)(user)
    doomed, hello = await open_ws(token)
    survivor, _ = await open_ws(other_token)

    await database_sync_to_async(account_services.session_revoke)(user=user, session_id=hello["session_id"])

    code, _ = await until_closed(doomed, timeout=1.0)
    assert code == 4401
    await assert_alive(survivor)
    assert await survivor.receive_nothing()
    await doomed.disconnect()
    await survivor.disconnect()


async def test_disabling_an_account_closes_all_its_sockets():
    user, token = await new_user_and_token()
    other_token = await database_sync_to_async(login)(user)
    _, bystander_token = await new_user_and_token()
    sockets = [(await open_ws(token))[0], (await open_ws(other_token))[0]]
    bystander, _ = await open_ws(bystander_token)

    await database_sync_to_async(account_services.account_disable)(user=user)

    for comm in sockets:
        code, _ = await until_closed(comm, timeout=1.0)
        assert code == 4401
    await assert_alive(bystander)
    for comm in (*sockets, bystander):
        await comm.disconnect()


async def test_logout_closes_that_sessions_socket():
    user, token = await new_user_and_token()
    comm, hello = await open_ws(token)
    session = await database_sync_to_async(Session.objects.get)(pk=hello["session_id"])

    await database_sync_to_async(account_services.session_logout)(session=session)

    code, _ = await until_closed(comm, timeout=1.0)
    assert code == 4401
    await comm.disconnect()


async def test_runbook_sql_session_delete_closes_the_socket_at_the_next_heartbeat(settings):
    # Seed 002's `DELETE FROM sessions` bypasses the services (no ForceDisconnect event): the
    # stream notices at its next heartbeat, when it re-checks that its session is live.
    settings.WS_PING_INTERVAL_MS = 300
    user, token = await new_user_and_token()
    comm, _ = await open_ws(token)

    def run_runbook_sql():
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM sessions WHERE user_id = %s", [user.pk])

    await database_sync_to_async(run_runbook_sql)()

    code, frames = await until_closed(comm, timeout=TIMEOUT)
    assert code == 4401
    assert frames[-1] == {"type": "closing", "code": 4401, "reason": "session ended"}
    await comm.disconnect()


# --- heartbeat, ping timeout, slow consumers ------------------------------------------------


async def test_heartbeats_arrive_at_the_ping_interval(settings):
    settings.WS_PING_INTERVAL_MS = 300
    settings.WS_PING_TIMEOUT_MS = 300
    _, token = await new_user_and_token()
    comm, hello = await open_ws(token)
    assert hello["heartbeat_interval_ms"] == 300

    started = time.monotonic()
    first = await comm.receive_json_from(timeout=TIMEOUT)
    second = await comm.receive_json_from(timeout=TIMEOUT)

    assert (first["type"], second["type"]) == ("heartbeat", "heartbeat")
    assert first["relay_lag"] is False
    assert time.monotonic() - started < 1.5
    await comm.disconnect()


async def test_silent_client_is_closed_with_4408(settings):
    settings.WS_PING_INTERVAL_MS = 300
    settings.WS_PING_TIMEOUT_MS = 300
    _, token = await new_user_and_token()
    comm, _ = await open_ws(token)
    before = await rejected_count("ping_timeout")

    code, frames = await until_closed(comm, timeout=3)

    assert code == 4408
    assert frames[-1]["type"] == "closing"
    assert await rejected_count("ping_timeout") == before + 1
    await comm.disconnect()


async def test_client_answering_heartbeats_is_not_timed_out(settings):
    settings.WS_PING_INTERVAL_MS = 300
    settings.WS_PING_TIMEOUT_MS = 300
    _, token = await new_user_and_token()
    comm, _ = await open_ws(token)

    deadline = time.monotonic() + 1.5  # well past interval + timeout
    while time.monotonic() < deadline:
        frame = await comm.receive_json_from(timeout=TIMEOUT)
        assert frame["type"] == "heartbeat", frame
        await comm.send_json_to({"type": "pong"})

    await assert_alive(comm)
    await comm.disconnect()


async def test_slow_consumer_is_closed_with_4008():
    user, token = await new_user_and_token()
    comm, _ = await open_ws(token)
    before = await rejected_count("slow_consumer")

    await get_channel_layer().group_send(
        user_group(user.pk),
        {"type": "realtime.event", "frame": {"type": "test.event"}, "source": None, "ts": time.time() - 60},
    )

    code, frames = await until_closed(comm)
    assert code == 4008
    assert [f["type"] for f in frames] == ["closing"]
    assert await rejected_count("slow_consumer") == before + 1
    await comm.disconnect()


# --- feature flags --------------------------------------------------------------------------


class FlaggedSource(registry.StreamSource):
    name = "test_flagged"
    feature = "groups"


async def echo_frame(stream, frame):
    return {"type": "test.echoed"}


@pytest.fixture
def flagged_plugin():
    """A throwaway domain plug-in guarded by the "groups" flag: one stream source, one frame."""
    registry.register_source(FlaggedSource())
    registry.register_frame("test.echo", echo_frame, feature="groups")
    yield
    registry._sources.pop(FlaggedSource.name, None)
    registry._frames.pop("test.echo", None)


async def test_frame_of_a_disabled_feature_gets_feature_disabled_error(settings, flagged_plugin):
    settings.GROUPS_ENABLED = False
    _, token = await new_user_and_token()
    comm, _ = await open_ws(token)

    await comm.send_json_to({"type": "test.echo", "ref": "f1"})

    frame = await comm.receive_json_from(timeout=TIMEOUT)
    assert frame == {
        "type": "error",
        "code": "FEATURE_DISABLED",
        "detail": "Groups are not enabled",
        "feature": "groups",
        "ref": "f1",
    }
    await comm.disconnect()


async def test_frame_of_an_enabled_feature_reaches_its_handler(settings, flagged_plugin):
    settings.GROUPS_ENABLED = True
    _, token = await new_user_and_token()
    comm, _ = await open_ws(token)

    await comm.send_json_to({"type": "test.echo", "ref": "f2"})

    assert await comm.receive_json_from(timeout=TIMEOUT) == {"type": "test.echoed", "ref": "f2"}
    await comm.disconnect()


async def test_flag_turned_off_mid_stream_tells_the_client_and_drops_its_events(settings, flagged_plugin):
    settings.GROUPS_ENABLED = True
    user, token = await new_user_and_token()
    comm, _ = await open_ws(token)

    settings.GROUPS_ENABLED = False

    frame = await comm.receive_json_from(timeout=TIMEOUT)  # within one tick (about a second)
    assert frame == {"type": "feature.disabled", "feature": "groups", "detail": "Groups are not enabled"}
    publish = database_sync_to_async(relay.publish_to_user)
    await publish(user.pk, {"type": "test.flagged"}, source=FlaggedSource.name)
    await publish(user.pk, {"type": "test.unflagged"})
    # Layer order is kept, so the unflagged frame coming first shows the other was dropped.
    assert await comm.receive_json_from(timeout=TIMEOUT) == {"type": "test.unflagged"}
    assert await comm.receive_nothing(timeout=0.2)
    await assert_alive(comm)  # a /ws stream carries other features too: it stays open
    await comm.disconnect()
