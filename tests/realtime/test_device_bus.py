"""The device bus (chatsite/realtime/device_bus.py): events for a device whose stream lives in
another process go through Redis pub/sub, batched, and a lost subscriber connection is never a
silent loss."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis
from channels.db import database_sync_to_async
from django.conf import settings
from websockets.asyncio.client import connect

from chatsite.realtime import device_bus, open_streams
from chatsite.realtime.relay import health
from tests.dm.helpers import pair, send
from tests.live import live_daphne
from tests.realtime.clients import next_frame, ws_connect

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 5


def raw_publish(device_id, frame: dict) -> int:
    """PUBLISH an event on the device's bus channel as another process's relay would."""
    event = {"type": "realtime.event", "frame": frame, "source": None, "ts": time.time()}
    return redis.Redis.from_url(settings.REDIS_URL).publish(device_bus.channel(device_id), json.dumps(event))


def kill_bus_connection(pubsub) -> None:
    """CLIENT KILL this process's device-bus subscriber connection, and only that one."""
    assert pubsub is not None
    host, port = pubsub.connection._writer.get_extra_info("sockname")[:2]
    killed = redis.Redis.from_url(settings.REDIS_URL).client_kill_filter(_id=None, addr=f"{host}:{port}")
    assert killed == 1


async def wait_for(condition, timeout: float = TIMEOUT) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def next_matching(ws, frame_type: str, timeout: float = TIMEOUT) -> dict:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(decode=True), timeout))
        if frame["type"] == frame_type:
            return frame


async def test_a_stream_is_subscribed_on_the_bus_before_its_open_returns():
    _, bob, _ = await pair()
    ws = await ws_connect(bob.token)
    await next_frame(ws, "heartbeat")

    # No wait: the subscription was confirmed by Redis before the stream replayed or said hello.
    assert await database_sync_to_async(raw_publish)(bob.device_id, {"type": "test.remote"}) == 1
    assert await next_frame(ws, "test.remote") == {"type": "test.remote"}
    await ws.disconnect()


async def test_a_quiet_subscriber_connection_stays_up(settings):
    settings.DEVICE_BUS_PING_INTERVAL_S = 0.2
    _, bob, _ = await pair()
    ws = await ws_connect(bob.token)
    await next_frame(ws, "heartbeat")
    failures, pubsub = health.failures, device_bus.bus()._pubsub

    await asyncio.sleep(1.5)  # longer than the shared client's read timeout, several PINGs

    assert health.failures == failures  # never marked failed, so no needless catch-up
    assert device_bus.bus()._pubsub is pubsub  # the same connection
    await ws.disconnect()


async def test_a_replacement_stream_keeps_the_device_subscribed_when_the_old_one_closes():
    _, bob, _ = await pair()
    first = await ws_connect(bob.token)
    await next_frame(first, "heartbeat")
    second = await ws_connect(bob.token)
    await next_frame(second, "heartbeat")
    await next_frame(first, "closing")  # replaced: its cleanup drops one watch of the device

    await database_sync_to_async(raw_publish)(bob.device_id, {"type": "test.remote"})

    assert await next_frame(second, "test.remote") == {"type": "test.remote"}
    await second.disconnect()
    await first.disconnect()


async def test_the_last_stream_of_a_device_unsubscribes_it():
    _, bob, _ = await pair()
    ws = await ws_connect(bob.token)
    await next_frame(ws, "heartbeat")
    await ws.disconnect()

    await wait_for(lambda: open_streams.by_device(bob.device_id) is None)
    await asyncio.sleep(0.1)  # the UNSUBSCRIBE is written by the stream's cleanup
    assert await database_sync_to_async(raw_publish)(bob.device_id, {"type": "test.remote"}) == 0


async def test_a_lost_subscriber_connection_resubscribes_and_makes_streams_catch_up():
    alice, bob, conv = await pair()
    ws = await ws_connect(bob.token)
    await next_frame(ws, "heartbeat")
    before = health.failures

    await database_sync_to_async(kill_bus_connection)(device_bus.bus()._pubsub)

    # Marked failed when the loss is seen, and a gap noted once it listens again: every stream
    # of this process reads the database on its next tick (Stream.tick), nothing is silently lost.
    await wait_for(lambda: health.failures >= before + 2 and device_bus.bus()._pubsub is not None)
    await wait_for(lambda: device_bus.bus()._connected.is_set())
    assert await database_sync_to_async(raw_publish)(bob.device_id, {"type": "test.remote"}) == 1
    assert await next_frame(ws, "test.remote") == {"type": "test.remote"}
    await ws.disconnect()


async def test_a_failed_publish_marks_the_relay_failed(monkeypatch):
    bus = device_bus.bus()

    class BrokenPipeline:
        def publish(self, *args):
            pass

        async def execute(self):
            raise redis.ConnectionError("injected")

    class BrokenClient:
        def pipeline(self, transaction=True):
            return BrokenPipeline()

    monkeypatch.setattr(device_bus, "get_async_redis", lambda: BrokenClient())
    before = health.failures
    monkeypatch.setattr(health, "ok", True)

    bus.publish("00000000-0000-0000-0000-000000000000", {"type": "realtime.event", "frame": {}})
    await bus.drain()

    assert health.ok is False
    assert health.failures == before + 1


# --- across real processes -------------------------------------------------------------------


@pytest.fixture(scope="module")
def bus_daphne(django_db_setup):
    # No heartbeat catch-up during the test: what arrives, arrives live over the bus.
    with live_daphne({"WS_PING_INTERVAL_MS": "60000", "WS_PING_TIMEOUT_MS": "60000"}) as server:
        yield server.http.replace("http://", "ws://") + "/ws"


async def test_messages_reach_a_device_whose_stream_is_in_another_process_live_and_in_order(bus_daphne):
    alice, bob, conv = await pair()
    async with connect(bus_daphne, additional_headers={"Authorization": f"Bearer {bob.token}"}) as ws:
        await next_matching(ws, "heartbeat")
        await asyncio.sleep(1.5)  # past the stream's opening replay and first ticks
        got, sent = [], []
        for _ in range(10):
            resp = await database_sync_to_async(send)(alice, conv, [bob.device_id])
            sent.append(resp.json()["message_id"])
            # Live: well inside a tick, so no database read of the stream's could have found it.
            got.append(await next_matching(ws, "dm.message", timeout=0.3))

    assert [f["message_id"] for f in got] == sent
    assert [f["cursor"] for f in got] == list(range(1, 11))


async def test_a_message_sent_while_the_other_process_lost_its_subscriber_still_arrives(bus_daphne):
    alice, bob, conv = await pair()
    async with connect(bus_daphne, additional_headers={"Authorization": f"Bearer {bob.token}"}) as ws:
        await next_matching(ws, "heartbeat")
        client = redis.Redis.from_url(settings.REDIS_URL)
        db = str(client.connection_pool.connection_kwargs.get("db", 0))
        bus_conns = [
            c
            for c in client.client_list(_type="pubsub")
            if int(c.get("sub", 0)) >= 2 and c.get("db") == db  # not another test run's
        ]
        # The daphne's subscriber holds rt.process and Bob's device (this process has none).
        assert bus_conns
        for conn in bus_conns:
            client.client_kill_filter(_id=conn["id"])
        sent = (await database_sync_to_async(send)(alice, conv, [bob.device_id])).json()["message_id"]

        frame = await next_matching(ws, "dm.message")

    assert frame["message_id"] == sent
