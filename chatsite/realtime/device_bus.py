"""Cross-process delivery of device events: Redis pub/sub, batched both ways.

An event for a device whose stream is open in another process (a `dm.message`, a `dm.acked`
position) used to go through the channel layer: a group look-up and a Lua push per message on the
sending side, and on the receiving side one blocking pop, one Redis round trip, per message, in a
process that also serves senders. At a few hundred messages per second the receiving side fell
behind (docs/performance.md). Here:

- each process keeps ONE subscriber connection and subscribes it to `rt.d.<device id>` for every
  device with a stream open in the process (a reference count: a replacement stream may overlap
  its predecessor); one socket read hands over every message that has arrived;
- publishes are queued and written by one task as a pipeline: everything published during one
  event-loop turn costs one round trip, in order.

Loss is never silent. The subscription is confirmed before `watch` returns (the stream replays
from the database only after that, so nothing published after its read can be missed). If the
subscriber connection fails, or a pipeline fails, the relay is marked failed; the subscriber
reconnects, resubscribes every device, and then bumps the relay's failure count again, so every
stream catches up from the database after it is listening again (`Stream.tick`). redis-py's own
silent reconnect is switched off on this connection for that reason.

Events are JSON (frames are JSON by construction: they are sent to clients as JSON).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from chatsite.api.redis import get_async_redis
from chatsite.realtime import open_streams

logger = logging.getLogger("chatsite.realtime")

_LAYER_ERRORS = (redis.RedisError, OSError, asyncio.TimeoutError)


def channel(device_id) -> str:
    return f"rt.d.{device_id}"


def _device_of(name: bytes | str) -> str:
    name = name.decode() if isinstance(name, bytes) else name
    return name[len("rt.d.") :]


class DeviceBus:
    """One per event loop (`bus()`): the subscriber task and the publish queue."""

    def __init__(self) -> None:
        self._watched: dict[str, int] = {}  # device id -> streams of this process watching it
        self._pending: dict[str, list[asyncio.Future]] = {}  # channel -> waiters for the confirm
        self._pubsub = None
        self._connected = asyncio.Event()
        self._reader: asyncio.Task | None = None
        self._outbox: list[tuple[str, bytes]] = []
        self._flusher: asyncio.Task | None = None
        self._client: aioredis.Redis | None = None

    # --- subscribing --------------------------------------------------------------------

    async def watch(self, device_id) -> bool:
        """Receive this device's events in this process; True once Redis has confirmed it."""
        key = str(device_id)
        self._watched[key] = self._watched.get(key, 0) + 1
        if self._watched[key] > 1:
            return True
        self._ensure_reader()
        try:
            await asyncio.wait_for(self._connected.wait(), settings.DEVICE_BUS_SUBSCRIBE_TIMEOUT_S)
            return await self._subscribe([key])
        except _LAYER_ERRORS:
            return False

    async def unwatch(self, device_id) -> None:
        key = str(device_id)
        count = self._watched.get(key, 0) - 1
        if count > 0:
            self._watched[key] = count
            return
        self._watched.pop(key, None)
        pubsub = self._pubsub
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.unsubscribe(channel(key))

    async def _subscribe(self, keys: list[str]) -> bool:
        pubsub = self._pubsub
        if pubsub is None:
            return False
        loop = asyncio.get_running_loop()
        waiters = []
        for key in keys:
            fut = loop.create_future()
            self._pending.setdefault(channel(key), []).append(fut)
            waiters.append(fut)
        await pubsub.subscribe(*[channel(k) for k in keys])
        await asyncio.wait_for(asyncio.gather(*waiters), settings.DEVICE_BUS_SUBSCRIBE_TIMEOUT_S)
        return True

    def _subscriber_client(self):
        """Its own client: no read timeout (a quiet subscriber is fine; the shared client's 0.5 s
        would drop it every half second), liveness by PING instead (_dispatch_all)."""
        if self._client is None:
            self._client = aioredis.Redis.from_url(
                settings.REDIS_URL, socket_connect_timeout=0.5, socket_timeout=None, socket_keepalive=True
            )
        return self._client

    def _ensure_reader(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read(), name="device-bus")

    async def _read(self) -> None:
        from chatsite.realtime.relay import health

        delay = 0.2
        first = True
        while True:
            pubsub = self._subscriber_client().pubsub()
            try:
                # Always one subscription, so the connection stays in subscribed mode even when
                # no device is watched; then every device this process watches.
                await pubsub.subscribe("rt.process")
                pubsub.connection.retry = Retry(NoBackoff(), 0)
                self._pubsub = pubsub
                reader = asyncio.ensure_future(self._dispatch_all(pubsub))
                if self._watched:
                    await self._subscribe(list(self._watched))
                self._connected.set()
                if not first:
                    # Listening again: every stream reads what it may have missed meanwhile.
                    health.note_gap()
                    logger.info("device bus reconnected", extra={"devices": len(self._watched)})
                first = False
                delay = 0.2
                await reader
            except asyncio.CancelledError:
                raise
            except _LAYER_ERRORS as exc:
                logger.warning("device bus lost Redis: %s", type(exc).__name__)
                health.mark_failed("device_bus")
            finally:
                self._connected.clear()
                self._pubsub = None
                for waiters in self._pending.values():
                    for fut in waiters:
                        if not fut.done():
                            fut.set_exception(redis.ConnectionError("device bus reconnecting"))
                self._pending.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _dispatch_all(self, pubsub) -> None:
        loop = asyncio.get_running_loop()
        interval = settings.DEVICE_BUS_PING_INTERVAL_S
        heard = loop.time()  # when Redis last said anything on this connection
        while True:
            message = await pubsub.get_message(timeout=interval)
            now = loop.time()
            if message is None:
                if now - heard > 3 * interval:
                    raise redis.ConnectionError("device bus: no answer to PING")
                await pubsub.ping()
                continue
            heard = now
            kind = message["type"]
            if kind == "message":
                await self._dispatch(message)
            elif kind == "subscribe":
                name = message["channel"]
                name = name.decode() if isinstance(name, bytes) else name
                for fut in self._pending.pop(name, []):
                    if not fut.done():
                        fut.set_result(True)

    async def _dispatch(self, message: dict[str, Any]) -> None:
        stream = open_streams.by_device(_device_of(message["channel"]))
        if stream is None:
            return
        try:
            event = json.loads(message["data"])
            await stream.handle_layer_message(event)
        except Exception:
            from chatsite.realtime.close_codes import CloseCode

            logger.exception("live delivery failed", extra={"device_id": str(stream.device_id)})
            await stream.close(CloseCode.INTERNAL_ERROR, "internal error")

    # --- publishing ---------------------------------------------------------------------

    def publish(self, device_id, event: dict[str, Any]) -> None:
        """Queue an event for a device's stream in another process; written with everything else
        queued in this event-loop turn, in order, in one round trip."""
        self._outbox.append((channel(device_id), json.dumps(event, separators=(",", ":")).encode()))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush(), name="device-bus-flush")

    async def _flush(self) -> None:
        from chatsite.realtime.relay import health

        while self._outbox:
            batch, self._outbox = self._outbox, []
            pipe = get_async_redis().pipeline(transaction=False)
            for name, data in batch:
                pipe.publish(name, data)
            try:
                await pipe.execute()
            except _LAYER_ERRORS as exc:
                # Dropped, and said so: streams in every process catch up from the database
                # once the relay answers again (the same contract as a failed group_send).
                logger.warning("device bus publish failed (%d events): %s", len(batch), type(exc).__name__)
                health.mark_failed("device_bus")

    async def drain(self) -> None:
        """Wait until everything queued has been written (tests, shutdown)."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)


_buses: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def bus() -> DeviceBus:
    loop = asyncio.get_running_loop()
    found = _buses.get(loop)
    if found is None:
        found = _buses[loop] = DeviceBus()
    return found
