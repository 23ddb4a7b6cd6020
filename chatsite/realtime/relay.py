"""The relay: publishing to live streams through the channel layer, and knowing when it fails.

Delivery is store-then-publish: a domain writes to PostgreSQL and publishes only after commit
(`publish_*` defer themselves to `transaction.on_commit`). The channel layer is a best-effort
fast path: when it fails, the publish is dropped (and counted), heartbeats say `relay_lag: true`,
and streams catch up from the database. Correctness comes from the database and cursors.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import redis
from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

from chatsite.api.redis import get_async_redis
from chatsite.metrics import REDIS_ERRORS, REDIS_READY
from chatsite.realtime import device_bus, open_streams
from chatsite.realtime.close_codes import CloseCode
from chatsite.realtime.names import chat_group, device_group, session_group, user_group

logger = logging.getLogger("chatsite.realtime")

EVENT_TYPE = "realtime.event"
CONTROL_TYPE = "realtime.control"


# --- Health ---------------------------------------------------------------------------------


class RelayHealth:
    """Per-process view of whether the channel layer's Redis answers.

    A failed publish or receive marks it failed at once; a ping (at most once per
    RELAY_HEALTH_CHECK_INTERVAL_MS) marks it healthy again.
    """

    def __init__(self) -> None:
        self.ok = True
        self.checked_at = 0.0
        # Bumped on every failure: a stream that sees it change catches up from the database,
        # since a publish from this process may have been lost even if Redis is back already.
        self.failures = 0

    def _set(self, ok: bool, component: str = "channel_layer") -> None:
        if self.ok and not ok:
            logger.warning("relay unavailable: live delivery paused, streams fall back to polling")
        elif ok and not self.ok:
            logger.info("relay available again: live delivery resumed")
        if not ok:
            self.failures += 1
            REDIS_ERRORS.labels(component=component).inc()
        self.ok = ok
        REDIS_READY.set(1 if ok else 0)

    def mark_failed(self, component: str = "channel_layer") -> None:
        self._set(False, component)

    def note_gap(self) -> None:
        """Something may have been missed though Redis answers now (the device bus was not
        listening for a while): every stream of this process catches up from the database."""
        self.failures += 1

    async def check(self) -> bool:
        """Whether the relay works now (cached for RELAY_HEALTH_CHECK_INTERVAL_MS)."""
        if not settings.REDIS_URL:
            return True
        now = time.monotonic()
        if now - self.checked_at < settings.RELAY_HEALTH_CHECK_INTERVAL_MS / 1000:
            return self.ok
        self.checked_at = now
        try:
            await get_async_redis().ping()
        except (redis.RedisError, OSError):
            self._set(False)
        else:
            self._set(True)
        return self.ok

    def check_sync(self) -> bool:
        from chatsite.api.redis import get_redis

        client = get_redis()
        if client is None:
            return True
        try:
            client.ping()
        except (redis.RedisError, OSError):
            self._set(False)
        else:
            self._set(True)
        return self.ok


health = RelayHealth()


def redis_status() -> str:
    """ "available" / "unavailable" (or "disabled" in embedded mode), for /dm/metrics and /health."""
    if not settings.REDIS_URL:
        return "disabled"
    return "available" if health.check_sync() else "unavailable"


# --- Publishing -----------------------------------------------------------------------------


def _event(frame: dict[str, Any], source: str | None) -> dict[str, Any]:
    return {"type": EVENT_TYPE, "frame": frame, "source": source, "ts": time.time()}


async def apublish(group: str, message: dict[str, Any]) -> bool:
    """Send a message to a channel-layer group now; False (and relay marked failed) on error."""
    layer = get_channel_layer()
    try:
        await layer.group_send(group, message)
    except (TimeoutError, redis.RedisError, OSError) as exc:
        logger.warning("publish to %s failed: %s", group, type(exc).__name__)
        health.mark_failed()
        return False
    return True


async def apublish_event(group: str, frame: dict[str, Any], *, source: str | None = None) -> bool:
    """Publish a frame to a channel-layer group now (the caller's write has committed)."""
    return await apublish(group, _event(frame, source))


async def _adeliver_to_device(device_id, event: dict[str, Any]) -> bool:
    stream = open_streams.by_device(device_id)
    if stream is not None:
        await stream.handle_layer_message(event)
        return True
    if settings.REDIS_URL:
        # Another process (or none) holds the device's stream: the device bus, batched.
        device_bus.bus().publish(device_id, event)
        return True
    return await apublish(device_group(device_id), event)


def publish_now(group: str, message: dict[str, Any]) -> bool:
    return async_to_sync(apublish)(group, message)


def _publish_on_commit(group: str, message: dict[str, Any]) -> None:
    transaction.on_commit(lambda: publish_now(group, message))


def publish_to_user(user_id: int, frame: dict[str, Any], *, source: str | None = None) -> None:
    """After commit, send `frame` to every live stream of the user."""
    _publish_on_commit(user_group(user_id), _event(frame, source))


def publish_to_device(device_id, frame: dict[str, Any], *, source: str | None = None) -> None:
    """After commit, send `frame` to the live stream of one device."""
    publish_to_devices([(device_id, frame)], source=source)


def publish_to_devices(items: list[tuple[Any, dict[str, Any]]], *, source: str | None = None) -> None:
    """After commit, send each (device id, frame) to that device's live stream, in one hop to the
    event loop. The route is the relay's choice, never the caller's: a stream open in this process
    gets the event directly (the path a layer message takes), any other through the channel layer."""
    if not items:
        return
    events = [(device_id, _event(frame, source)) for device_id, frame in items]
    transaction.on_commit(lambda: _hand_over(events))


# Publishes handed to the event loop and not finished yet (a task must be referenced until done).
_in_flight: set[asyncio.Task] = set()


def _hand_over(events: list[tuple[Any, dict[str, Any]]]) -> None:
    """From a worker thread of the server's event loop (a sync view, a service run by the gateway
    on the thread pool), hand the events to the loop and return at once: the thread and its
    database connection are free for the next request instead of waiting for the delivery. Events
    are handed over in commit order; a live event that overtakes another is put back in order by
    the stream (dm/streams.py), and one that is lost is read from the database. Anywhere else
    (a Celery task, a management command) the publish runs to its end here."""
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    if loop is not None and loop.is_running():
        loop.call_soon_threadsafe(_start_publish, events)
        return
    async_to_sync(_apublish_device_events_now)(events)


async def _apublish_device_events_now(events: list[tuple[Any, dict[str, Any]]]) -> None:
    """The same, written before returning (this loop may end with the call)."""
    await _apublish_device_events(events)
    if settings.REDIS_URL:
        await device_bus.bus().drain()


def _start_publish(events: list[tuple[Any, dict[str, Any]]]) -> None:
    task = asyncio.get_running_loop().create_task(_apublish_device_events(events))
    _in_flight.add(task)
    task.add_done_callback(_in_flight.discard)


async def _apublish_device_events(events: list[tuple[Any, dict[str, Any]]]) -> None:
    for device_id, event in events:
        try:
            await _adeliver_to_device(device_id, event)
        except Exception:
            # The message is stored. The stream that failed on it is closed 1011, as a live event
            # that fails on the channel-layer path is: its client resumes from its cursor.
            logger.exception("live delivery failed", extra={"device_id": str(device_id)})
            stream = open_streams.by_device(device_id)
            if stream is not None:
                await stream.close(CloseCode.INTERNAL_ERROR, "internal error")


def publish_to_group(group_id, frame: dict[str, Any], *, source: str | None = None) -> None:
    """After commit, send `frame` to every stream subscribed to a chat group."""
    _publish_on_commit(chat_group(group_id), _event(frame, source))


def close_streams(
    *, user_id: int | None = None, session_ids=(), device_id=None, code: int, reason: str
) -> None:
    """After commit, close live streams: those of some sessions, of a device, or all of a user's."""
    message = {"type": CONTROL_TYPE, "action": "close", "code": int(code), "reason": reason}
    if session_ids:
        for sid in session_ids:
            _publish_on_commit(session_group(sid), message)
    elif device_id is not None:
        _publish_on_commit(device_group(device_id), message)
    elif user_id is not None:
        _publish_on_commit(user_group(user_id), message)
