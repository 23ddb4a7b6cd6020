"""Seed 002's compromised-account step: `redis-cli PUBLISH "user:<id>" '{"type":"ForceDisconnect"}'`
closes that user's live streams, and only theirs."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from django.conf import settings

from tests.conftest import login
from tests.factories import UserFactory
from tests.realtime.clients import next_frame, ws_connect

pytestmark = pytest.mark.django_db(transaction=True)


async def publish_until_heard(publisher, channel: str, payload: str) -> None:
    """The process subscribes when its first stream opens: publish until a subscriber hears it."""
    for _ in range(100):
        if await publisher.publish(channel, payload):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"nobody subscribed to {channel}")


async def test_force_disconnect_publish_closes_only_that_users_streams(redis_required):
    user, other = await database_sync_to_async(UserFactory)(), await database_sync_to_async(UserFactory)()
    ws = await ws_connect(await database_sync_to_async(login)(user))
    bystander = await ws_connect(await database_sync_to_async(login)(other))
    publisher = aioredis.Redis.from_url(settings.REDIS_URL)
    try:
        await publish_until_heard(publisher, f"user:{user.pk}", json.dumps({"type": "ForceDisconnect"}))
        closing = await next_frame(ws, "closing")
        assert closing == {"type": "closing", "code": 4401, "reason": "force disconnect"}
        assert await ws.receive_output(timeout=2) == {"type": "websocket.close", "code": 4401}
        await ws.disconnect()  # the server's side of the close: the consumer cleans up

        await bystander.send_json_to({"type": "ping", "ref": 1})
        assert (await next_frame(bystander, "pong"))["ref"] == 1
    finally:
        await bystander.disconnect()
        await publisher.aclose()


async def test_other_messages_on_the_user_channel_are_ignored(redis_required):
    user = await database_sync_to_async(UserFactory)()
    ws = await ws_connect(await database_sync_to_async(login)(user))
    publisher = aioredis.Redis.from_url(settings.REDIS_URL)
    try:
        await publish_until_heard(publisher, f"user:{user.pk}", json.dumps({"type": "SomethingElse"}))
        await publisher.publish(f"user:{user.pk}", "not json")
        await ws.send_json_to({"type": "ping", "ref": 2})
        assert (await next_frame(ws, "pong"))["ref"] == 2
    finally:
        await ws.disconnect()
        await publisher.aclose()
