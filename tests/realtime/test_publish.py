"""The gateway's publish API for domains: after commit, never before, and never on rollback."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

from chatsite.realtime import relay
from chatsite.realtime.names import chat_group

pytestmark = pytest.mark.django_db(transaction=True)


async def _listener(group: str) -> str:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    return channel


async def _pending(channel: str) -> list[dict]:
    """What the channel holds now, without waiting long."""
    layer, out = get_channel_layer(), []
    while True:
        try:
            out.append(await asyncio.wait_for(layer.receive(channel), 0.3))
        except TimeoutError:
            return out


async def test_publish_to_group_arrives_only_after_commit():
    channel = await _listener(chat_group(42))
    committed = asyncio.Event()

    def publish_in_transaction(loop):
        with transaction.atomic():
            relay.publish_to_group(42, {"type": "group.event", "n": 1}, source="groups")
            before = asyncio.run_coroutine_threadsafe(_pending(channel), loop).result()
        loop.call_soon_threadsafe(committed.set)
        return before

    in_thread = database_sync_to_async(publish_in_transaction, thread_sensitive=False)
    before = await in_thread(asyncio.get_running_loop())
    assert before == []  # not before the commit
    await committed.wait()
    (message,) = await _pending(channel)
    assert message["type"] == relay.EVENT_TYPE
    assert message["frame"] == {"type": "group.event", "n": 1} and message["source"] == "groups"


async def test_publish_to_group_is_dropped_on_rollback():
    channel = await _listener(chat_group(43))

    def publish_then_roll_back():
        with pytest.raises(RuntimeError), transaction.atomic():
            relay.publish_to_group(43, {"type": "group.event"})
            raise RuntimeError("rolled back")

    await database_sync_to_async(publish_then_roll_back)()
    assert await _pending(channel) == []
