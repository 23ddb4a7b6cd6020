"""Seed 002's ForceDisconnect: `redis-cli PUBLISH "user:<user_id>" '{"type":"ForceDisconnect"}'`
closes every live stream of that user in every process, as the compromised-account runbook
expects (it is the step after `DELETE FROM sessions WHERE user_id = ...`, which alone would only
be noticed at the next heartbeat).

Each process subscribes once (pattern `user:*`) when its first stream opens, and keeps the
subscription across Redis outages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref

import redis
from django.conf import settings

from chatsite.api.redis import get_async_redis
from chatsite.realtime import open_streams
from chatsite.realtime.close_codes import CloseCode

logger = logging.getLogger("chatsite.realtime")

_listeners: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def ensure_listening() -> None:
    """Start this event loop's listener if it is not running (idempotent, cheap)."""
    if not settings.REDIS_URL:
        return
    loop = asyncio.get_running_loop()
    task = _listeners.get(loop)
    if task is None or task.done():
        _listeners[loop] = loop.create_task(_listen())


async def _listen() -> None:
    delay = 0.2
    while True:
        pubsub = None
        try:
            pubsub = get_async_redis().pubsub(ignore_subscribe_messages=True)
            await pubsub.psubscribe("user:*")
            delay = 0.2
            async for message in pubsub.listen():
                await _handle(message)
        except asyncio.CancelledError:
            raise
        except (redis.RedisError, OSError) as exc:
            logger.debug("force-disconnect listener lost Redis: %r", exc)
        finally:
            if pubsub is not None:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


async def _handle(message: dict) -> None:
    channel = message.get("channel", b"")
    channel = channel.decode() if isinstance(channel, bytes) else str(channel)
    try:
        user_id = int(channel.split(":", 1)[1])
        payload = json.loads(message.get("data") or b"{}")
    except (ValueError, IndexError):
        return
    if not isinstance(payload, dict) or payload.get("type") != "ForceDisconnect":
        return
    streams = open_streams.by_user(user_id)
    if streams:
        logger.warning("ForceDisconnect", extra={"user_id": user_id, "streams": len(streams)})
    for stream in streams:
        await stream.close(CloseCode.UNAUTHENTICATED, "force disconnect")
