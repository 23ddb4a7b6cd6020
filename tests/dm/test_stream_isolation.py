"""One device's replay never delays another sender: the feed's lock is not held across database
reads, and a live event never waits for a replay (issue 12)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from dm import streams
from tests.dm.helpers import opaque_envelopes, pair
from tests.realtime.clients import next_frame, ws_connect

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_replay_blocked_on_the_database_does_not_delay_another_senders_dm_sent(monkeypatch):
    alice, bob, conv = await pair()
    release = asyncio.Event()
    read_page = streams._read_page

    async def slow_for_bob(*, device_id, after, limit):
        if str(device_id) == bob.device_id:
            await release.wait()  # Bob's replay is stuck in its database read
        return await read_page(device_id=device_id, after=after, limit=limit)

    monkeypatch.setattr(streams, "_read_page", slow_for_bob)
    bob_ws = await ws_connect(bob.token)
    alice_ws = await ws_connect(alice.token)
    await next_frame(bob_ws, "heartbeat")  # Bob's stream is open and its replay started

    await alice_ws.send_json_to(
        {
            "type": "dm.send",
            "ref": "s1",
            "conversation_id": conv,
            "client_message_id": uuid.uuid4().hex,
            "envelopes": opaque_envelopes(bob.device_id),
        }
    )
    sent = await next_frame(alice_ws, "dm.sent", timeout=2)

    assert sent["ref"] == "s1" and not release.is_set()
    release.set()
    delivered = await next_frame(bob_ws, "dm.message")
    assert delivered["message_id"] == sent["message_id"] and delivered["cursor"] == 1
    assert await bob_ws.receive_nothing(timeout=0.3)  # once
