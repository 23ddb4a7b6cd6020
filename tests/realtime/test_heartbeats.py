"""Heartbeats on /ws: sent at the ping interval, and a client that stops answering is closed 4408."""

from __future__ import annotations

import time

import pytest

from tests.realtime.clients import (
    TIMEOUT,
    assert_alive,
    new_user_and_token,
    open_ws,
    rejected_count,
    until_closed,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fast_heartbeats(settings):
    """A heartbeat every 300 ms, and 300 ms to answer one."""
    settings.WS_PING_INTERVAL_MS = 300
    settings.WS_PING_TIMEOUT_MS = 300


async def test_heartbeats_arrive_at_the_ping_interval(fast_heartbeats):
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


async def test_silent_client_is_closed_with_4408(fast_heartbeats):
    _, token = await new_user_and_token()
    comm, _ = await open_ws(token)
    before = await rejected_count("ping_timeout")

    code, frames = await until_closed(comm, timeout=3)

    assert code == 4408
    assert frames[-1]["type"] == "closing"
    assert await rejected_count("ping_timeout") == before + 1
    await comm.disconnect()


async def test_client_answering_heartbeats_is_not_timed_out(fast_heartbeats):
    _, token = await new_user_and_token()
    comm, _ = await open_ws(token)

    deadline = time.monotonic() + 1.5  # well past interval + timeout
    while time.monotonic() < deadline:
        frame = await comm.receive_json_from(timeout=TIMEOUT)
        assert frame["type"] == "heartbeat", frame
        await comm.send_json_to({"type": "pong"})

    await assert_alive(comm)
    await comm.disconnect()
