"""The after-commit publish is handed to the event loop: the sender's call returns without waiting
for the delivery, and a delivery that fails cannot fail the send (the message is stored; the
stream that failed closes 1011 and its client resumes from its cursor)."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from chatsite.realtime import open_streams
from tests.dm.helpers import pair, send
from tests.realtime.clients import next_frame, ws_connect

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_live_delivery_that_fails_does_not_fail_the_send_and_its_stream_resumes(monkeypatch):
    alice, bob, conv = await pair()
    ws = await ws_connect(bob.token)
    await next_frame(ws, "heartbeat")
    stream = open_streams.by_device(bob.device_id)

    async def broken(message):
        raise RuntimeError("injected delivery failure")

    monkeypatch.setattr(stream, "handle_layer_message", broken)

    resp = await database_sync_to_async(send)(alice, conv, [bob.device_id])

    assert resp.status_code == 201  # the send is not the delivery's victim
    closing = await next_frame(ws, "closing")
    assert closing["code"] == 1011  # only that stream, as for a failing layer event
    again = await ws_connect(bob.token, "?cursor=0")
    frame = await next_frame(again, "dm.message")  # the stored message, on reconnect
    assert frame["message_id"] == resp.json()["message_id"]
    await again.disconnect()
    await ws.disconnect()
