"""The gateway's publish API for domains, to a group or to a user's streams: after commit, never
before, and never on rollback."""

from __future__ import annotations

import asyncio
import threading

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

from chatsite.realtime import relay
from chatsite.realtime.names import chat_group
from tests.realtime.clients import TIMEOUT, new_user_and_token, open_ws

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


# --- to a user's live streams -----------------------------------------------------------


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
