"""A real relay outage: the channel layer's Redis dies under a connected socket and comes back.

The test starts its own throwaway redis-server (so killing it touches nobody else), points the
process at it, kills it, and restarts it on the same port. Nothing is mocked.
"""

from __future__ import annotations

import time

import pytest
from channels.db import database_sync_to_async
from django.db import transaction

from chatsite.asgi import application
from chatsite.metrics import REDIS_READY
from chatsite.realtime import relay
from tests.conftest import login
from tests.factories import UserFactory
from tests.realtime.clients import Communicator

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 3


def reset_relay_health() -> None:
    relay.health.ok = True
    relay.health.checked_at = 0.0


async def next_heartbeat(comm: Communicator) -> dict:
    frame = await comm.receive_json_from(timeout=TIMEOUT)
    assert frame["type"] == "heartbeat", frame
    return frame


async def heartbeat_with(comm: Communicator, *, relay_lag: bool) -> dict:
    """The first heartbeat saying `relay_lag`; only heartbeats may come before it."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        frame = await next_heartbeat(comm)
        if frame["relay_lag"] is relay_lag:
            return frame
    raise AssertionError(f"no heartbeat with relay_lag={relay_lag} within {TIMEOUT}s")


def redis_ready() -> float:
    return REDIS_READY.collect()[0].samples[0].value


def publish_committed(user_id: int, frame: dict) -> None:
    with transaction.atomic():
        relay.publish_to_user(user_id, frame)


async def test_relay_outage_is_reported_in_heartbeats_and_recovers(throwaway_redis, settings):
    settings.WS_PING_INTERVAL_MS = 500
    settings.RELAY_HEALTH_CHECK_INTERVAL_MS = 100
    settings.RELAY_POLL_INTERVAL_MS = 500
    user = await database_sync_to_async(UserFactory)()
    token = await database_sync_to_async(login)(user)
    comm = Communicator(application, "/ws", headers=[(b"authorization", f"Bearer {token}".encode())])
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected
    assert (await comm.receive_json_from(timeout=TIMEOUT))["type"] == "hello"
    assert (await next_heartbeat(comm))["relay_lag"] is False
    assert await database_sync_to_async(relay.redis_status)() == "available"

    # --- Redis dies ---
    throwaway_redis.stop()

    await heartbeat_with(comm, relay_lag=True)
    assert (await next_heartbeat(comm))["relay_lag"] is True  # and stays so while it is down
    assert await database_sync_to_async(relay.redis_status)() == "unavailable"
    assert redis_ready() == 0
    # The socket itself is fine: the gateway answers without Redis.
    await comm.send_json_to({"type": "ping", "ref": "during"})
    frame = await comm.receive_json_from(timeout=TIMEOUT)
    while frame["type"] == "heartbeat":
        frame = await comm.receive_json_from(timeout=TIMEOUT)
    assert frame == {"type": "pong", "ref": "during"}

    # --- Redis is back (empty: group memberships and queued messages are gone) ---
    throwaway_redis.start()

    await heartbeat_with(comm, relay_lag=False)
    assert await database_sync_to_async(relay.redis_status)() == "available"
    assert redis_ready() == 1
    await database_sync_to_async(publish_committed, thread_sensitive=False)(
        user.pk, {"type": "test.after_recovery"}
    )
    frame = await comm.receive_json_from(timeout=TIMEOUT)
    while frame["type"] == "heartbeat":
        frame = await comm.receive_json_from(timeout=TIMEOUT)
    assert frame == {"type": "test.after_recovery"}
    await comm.disconnect()


async def test_publish_during_outage_does_not_raise(throwaway_redis):
    user = await database_sync_to_async(UserFactory)()
    throwaway_redis.stop()

    # Store-then-publish: the write commits; the lost publish is counted, not raised.
    await database_sync_to_async(publish_committed, thread_sensitive=False)(user.pk, {"type": "test.lost"})

    assert relay.health.ok is False


async def test_socket_opened_during_outage_is_accepted_with_relay_lag(throwaway_redis):
    user = await database_sync_to_async(UserFactory)()
    token = await database_sync_to_async(login)(user)
    throwaway_redis.stop()
    comm = Communicator(application, "/ws", headers=[(b"authorization", f"Bearer {token}".encode())])

    connected, _ = await comm.connect(timeout=TIMEOUT)

    assert connected
    assert (await comm.receive_json_from(timeout=TIMEOUT))["type"] == "hello"
    assert (await next_heartbeat(comm))["relay_lag"] is True
    await comm.send_json_to({"type": "ping"})
    assert await comm.receive_json_from(timeout=TIMEOUT) == {"type": "pong"}
    await comm.disconnect()
