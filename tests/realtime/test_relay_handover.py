"""The after-commit publish is handed to the event loop: the sender's call returns without waiting
for the delivery, and a delivery that fails cannot fail the send (the message is stored; the
stream reads it from the database)."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from chatsite.realtime import open_streams, relay
from tests.dm.helpers import open_conversation, party, send
from tests.realtime.clients import next_frame, ws_connect

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def pair():
    alice, bob = party(), party()
    return alice, bob, open_conversation(alice, bob)


async def test_a_live_delivery_that_fails_does_not_fail_the_send_and_the_stream_catches_up(monkeypatch):
    alice, bob, conv = await pair()
    ws = await ws_connect(bob.token)
    await next_frame(ws, "heartbeat")
    stream = open_streams.by_device(bob.device_id)
    failures = relay.health.failures
    original = stream.handle_layer_message

    async def broken_once(message):
        monkeypatch.setattr(stream, "handle_layer_message", original)
        raise RuntimeError("injected delivery failure")

    monkeypatch.setattr(stream, "handle_layer_message", broken_once)

    resp = await database_sync_to_async(send)(alice, conv, [bob.device_id])

    assert resp.status_code == 201  # the send is not the delivery's victim
    frame = await next_frame(ws, "dm.message", timeout=5)  # read from the database at the next tick
    assert frame["message_id"] == resp.json()["message_id"]
    assert relay.health.failures == failures + 1
    await ws.disconnect()
