"""Presence on every live stream (/ws, /dm/sse), plugged in as a StreamSource.

- on_open: the stream's liveness key in Redis, device_online in PostgreSQL (one write per
  connect), and `presence.changed` to contacts when the user was offline;
- on_tick: once per PRESENCE_HEARTBEAT_S, refresh the key's TTL (Redis only: a steady heartbeat
  writes nothing to PostgreSQL); with Redis down, write last_seen_at instead (degraded mode);
- cleanup (stream.on_cleanup, run on every exit path of the transport) starts a task of its own,
  detached from the stream: drop the key; when it was the user's last stream, clear
  device_online and flush last_seen_at, then after PRESENCE_OFFLINE_GRACE_S tell contacts it went
  offline unless it came back meanwhile. Detached because the gateway gives each cleanup hook a
  short deadline and daphne kills a consumer that is slow to end: under load (bench/
  presence_load.py, 5,000 clients) the Redis and database round trips outlived both, and the
  user stayed online until the sweep.
A crashed process runs no cleanup: its keys expire and presence.tasks.sweep_presence clears it.
"""

from __future__ import annotations

import asyncio
import logging
import time

from channels.db import database_sync_to_async
from django.conf import settings

from chatsite.realtime import registry
from chatsite.realtime.stream import Stream
from presence import liveness, services
from presence.metrics import PRESENCE_HEARTBEATS, PRESENCE_LIVE_STREAMS

logger = logging.getLogger(__name__)
SOURCE = "presence"
REDIS_ERRORS = services.REDIS_ERRORS

_mark_online = database_sync_to_async(services.mark_online, thread_sensitive=False)
_mark_offline = database_sync_to_async(services.mark_offline, thread_sensitive=False)
_touch = database_sync_to_async(services.touch_last_seen, thread_sensitive=False)
_announce = database_sync_to_async(services.announce, thread_sensitive=False)
_settle = database_sync_to_async(services.settle_offline, thread_sensitive=False)

# End-of-stream tasks (offline write, grace timer); referenced until done.
_pending: set[asyncio.Task] = set()


def _conn(stream: Stream) -> str:
    return str(stream.device_id) if stream.device_id is not None else stream.channel_name


async def _beat(stream: Stream) -> str:
    """Refresh liveness; returns the store used ("redis" or "database")."""
    try:
        was_live = await liveness.abeat(stream.user_id, _conn(stream))
    except REDIS_ERRORS:
        was_live = None
    if was_live is False:
        # The key had lapsed (Redis restarted, or a stalled loop let the sweep clear the user):
        # the stream is alive, so the user is online again (one write, not per heartbeat).
        await _mark_online(user_id=stream.user_id)
        await _announce(user_id=stream.user_id, online=True)
    if was_live is not None:
        return "redis"
    await _touch(user_id=stream.user_id)
    return "database"


async def _grace_then_settle(user_id: int) -> None:
    await asyncio.sleep(max(0, settings.PRESENCE_OFFLINE_GRACE_S))
    try:
        await _settle(user_id=user_id)
    except Exception:
        logger.warning("presence offline push failed", exc_info=True)


async def _stream_ended(user_id: int, conn: str) -> None:
    try:
        others = await liveness.aend(user_id, conn)
    except REDIS_ERRORS:
        others = False
    if others:
        return
    try:
        await _mark_offline(user_id=user_id)
    except Exception:
        # The sweep clears device_online within two heartbeats (presence.tasks.sweep_presence).
        logger.warning("presence offline write failed", exc_info=True)
    await _grace_then_settle(user_id)


class PresenceSource(registry.StreamSource):
    name = SOURCE
    feature = "presence"

    async def on_open(self, stream: Stream) -> None:
        """Registers the cleanup hook now and marks the user online in a task of the stream: the
        gateway's first heartbeat goes out before any source's work (registry.StreamSource)."""
        user_id, conn = stream.user_id, _conn(stream)
        stream.state[SOURCE] = time.monotonic()
        PRESENCE_LIVE_STREAMS.inc()

        async def cleanup() -> None:
            PRESENCE_LIVE_STREAMS.dec()
            task = asyncio.get_running_loop().create_task(_stream_ended(user_id, conn))
            _pending.add(task)
            task.add_done_callback(_pending.discard)

        stream.on_cleanup(SOURCE, cleanup)
        stream.spawn(self._go_online(user_id, conn), name="presence online")

    async def _go_online(self, user_id: int, conn: str) -> None:
        try:
            await liveness.abeat(user_id, conn)
        except REDIS_ERRORS:
            logger.info("presence: Redis unavailable, liveness kept in the database")
        await _mark_online(user_id=user_id)
        await _announce(user_id=user_id, online=True)

    async def on_tick(self, stream: Stream) -> None:
        last = stream.state.get(SOURCE)
        if last is None or time.monotonic() - last < settings.PRESENCE_HEARTBEAT_S:
            return
        stream.state[SOURCE] = time.monotonic()
        PRESENCE_HEARTBEATS.labels(store=await _beat(stream)).inc()


def register() -> None:
    registry.register_source(PresenceSource())
