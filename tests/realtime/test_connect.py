"""Connecting to /ws: bearer header or one-time ticket, 4401 without a live session, the browser
Origin check at the handshake, and a consumer that ends promptly when its client leaves."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from chatsite.accounts.models import Session
from chatsite.accounts.tickets import stream_ticket_issue
from chatsite.realtime import consumers
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


async def test_ticket_query_parameter_connects():
    user, token = await new_user_and_token()
    session = await database_sync_to_async(Session.objects.get)(user=user)
    ticket, _ = await database_sync_to_async(stream_ticket_issue)(session=session)

    comm, hello = await open_ws(None, query=f"?ticket={ticket}")  # the ticket alone

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
