"""Seed 003's limits on /ws: message and byte rates, frame size, connections per address and in
total, streams per user and per device, and the slow consumer cut."""

from __future__ import annotations

import time
import uuid

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from chatsite.accounts.models import Session
from chatsite.realtime.names import user_group
from tests.realtime.clients import (
    TIMEOUT,
    assert_alive,
    communicator,
    new_user_and_token,
    open_ws,
    rejected_count,
    until_closed,
)

pytestmark = pytest.mark.django_db(transaction=True)


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
