"""One live stream (a WebSocket on /ws or an SSE response), whatever its transport.

The WebSocket consumer and the SSE view both drive a `Stream`: it registers the stream against
the per-user limits, subscribes to the channel-layer groups, replays from the domains' cursors,
sends heartbeats carrying `relay_lag`, polls the database while the relay is down, catches up
when it returns, and turns queued events into frames (closing slow consumers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import redis
from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from chatsite.accounts.selectors import session_is_live
from chatsite.api import flags
from chatsite.metrics import WS_CONNECTION_REJECTED, WS_MESSAGES_SENT
from chatsite.realtime import (
    admission,
    device_bus,
    force_disconnect,
    live_connections,
    open_streams,
    registry,
)
from chatsite.realtime.close_codes import CloseCode
from chatsite.realtime.names import device_group, session_group, user_group
from chatsite.realtime.relay import CONTROL_TYPE, EVENT_TYPE, health

logger = logging.getLogger("chatsite.realtime")


_LAYER_ERRORS = (redis.RedisError, OSError, asyncio.TimeoutError)


class Stream:
    def __init__(
        self,
        *,
        transport: str,
        user_id: int,
        session_id,
        device_id,
        channel_layer,
        channel_name: str,
        send_frame: Callable[[dict[str, Any]], Awaitable[None]],
        close_transport: Callable[[int, str], Awaitable[None]],
        params: dict[str, str] | None = None,
        client_ip: str | None = None,
        user_agent: str = "",
    ) -> None:
        self.transport = transport
        # The client's address as the transport worked it out (per-IP limits of domains).
        self.client_ip = client_ip
        # The User-Agent header, for the connection-storm report only (live_connections).
        self.user_agent = user_agent
        self.opened_at = time.time()
        self.user_id = user_id
        self.session_id = session_id
        self.device_id = device_id
        self.channel_layer = channel_layer
        self.channel_name = channel_name
        self._send_frame = send_frame
        self._close_transport = close_transport
        self.params = params or {}
        self.state: dict[str, Any] = {}  # per-source state, e.g. the dm cursor
        self.relay_lag = False
        self.closed = False
        self.close_reason = ""  # the `closing` frame's human-readable reason
        self.close_code: int | None = None  # set when the server closes the stream
        self.last_received = time.monotonic()
        self._last_heartbeat = time.monotonic()
        self._last_poll = 0.0
        self._failures_seen = health.failures
        self._disabled_sources: set[str] = set()
        self._send_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()  # the ticker, replays, gap timers: ended by cleanup()
        self._cleaned_up = False
        self._bus_watching = False  # this stream holds a device_bus.watch() of its device
        self._joined_groups: set[str] = set()  # join_group(): extra groups, discarded by cleanup()
        # on_cleanup(): async callbacks run (best effort) when the stream ends, by key
        self._cleanup_hooks: dict[str, Callable[[], Awaitable[None]]] = {}

    # --- subscriptions ---------------------------------------------------------------------

    def active_sources(self) -> list[registry.StreamSource]:
        return [s for s in registry.sources() if s.name not in self._disabled_sources]

    def groups(self) -> list[str]:
        groups = [user_group(self.user_id), session_group(self.session_id)]
        if self.device_id is not None:
            groups.append(device_group(self.device_id))
        for src in self.active_sources():
            groups.extend(src.groups(self))
        groups.extend(sorted(self._joined_groups))
        return groups

    async def join_group(self, name: str) -> None:
        """Listen to one more channel-layer group until leave_group() or the end of the stream
        (re-joined with the others when the relay comes back). Raises the layer's error."""
        self._joined_groups.add(name)
        try:
            await self.channel_layer.group_add(name, self.channel_name)
        except _LAYER_ERRORS:
            self._joined_groups.discard(name)
            health.mark_failed()
            raise

    async def leave_group(self, name: str) -> None:
        """Stop listening to a group joined with join_group(); best effort."""
        self._joined_groups.discard(name)
        with contextlib.suppress(Exception):
            await self.channel_layer.group_discard(name, self.channel_name)

    def on_cleanup(self, key: str, callback: Callable[[], Awaitable[None]] | None) -> None:
        """Run `callback` (best effort) when the stream ends; None forgets the callback of `key`."""
        if callback is None:
            self._cleanup_hooks.pop(key, None)
        else:
            self._cleanup_hooks[key] = callback

    async def _subscribe(self) -> bool:
        try:
            for group in self.groups():
                await self.channel_layer.group_add(group, self.channel_name)
        except _LAYER_ERRORS:
            health.mark_failed()
            return False
        if self.device_id is not None and settings.REDIS_URL and not self._bus_watching:
            # The device's events from other processes (chatsite/realtime/device_bus.py).
            self._bus_watching = True
            if not await device_bus.bus().watch(self.device_id):
                health.mark_failed("device_bus")
                return False
        return True

    async def open(self) -> None:
        """Register, subscribe, heartbeat, then start the replays; live events queue in the
        layer meanwhile."""
        for src in registry.sources():
            if src.feature and not flags.is_enabled(src.feature):
                self._disabled_sources.add(src.name)
        for channel, code in await admission.register(self.user_id, self.device_id, self.channel_name):
            reason = "replaced by a newer stream" if code == CloseCode.REPLACED else "stream limit reached"
            WS_CONNECTION_REJECTED.labels(
                reason="replaced" if code == CloseCode.REPLACED else "stream_limit"
            ).inc()
            # Best effort across processes (the old stream may live elsewhere, or be gone already);
            # one in this process is closed directly below, relay or not.
            with contextlib.suppress(Exception):
                await self.channel_layer.send(
                    channel, {"type": CONTROL_TYPE, "action": "close", "code": int(code), "reason": reason}
                )
            await _close_local(channel, code, reason)
        if not await self._subscribe() or not await health.check():
            self.relay_lag = True
        for src in self.active_sources():
            await src.on_open(self)
        # The first heartbeat (with relay_lag) comes before any replay: sources replay in tasks
        # of the stream (spawned by on_open, so not started before this send), and frames,
        # acknowledgements among them, are read while a replay runs.
        await self.heartbeat()

    def mark_closed(self, code: int, reason: str) -> None:
        """Record that the server closes the stream, and why (the transport says it itself)."""
        self.closed = True
        self.close_reason = reason
        self.close_code = int(code)

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.mark_closed(code, reason)
        with contextlib.suppress(Exception):
            await self._send_frame({"type": "closing", "code": int(code), "reason": reason})
        await self._close_transport(code, reason)

    def spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task:
        """Run work of this stream (ticks, a source's replay) beside its frames; cleanup() ends
        it. A failure is logged and ends that task only: the next tick retries what it was for."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "stream task failed",
                exc_info=task.exception(),
                extra={"task": task.get_name(), "transport": self.transport},
            )

    async def cleanup(self) -> None:
        """Release everything the stream holds; runs once, on every exit path of its transport.

        Synchronous steps first (they cannot fail or be interrupted), then the best-effort
        network ones: the registry entry also expires, and group memberships lapse with the
        channel (channels_redis group_expiry)."""
        if self._cleaned_up:
            return
        self._cleaned_up = True
        self.closed = True
        open_streams.remove(self)
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        with contextlib.suppress(Exception):
            await admission.unregister(self.user_id, self.device_id, self.channel_name)
        with contextlib.suppress(Exception):
            await live_connections.forget(self)
        if self._bus_watching:
            self._bus_watching = False
            with contextlib.suppress(Exception):
                await device_bus.bus().unwatch(self.device_id)
        hooks, self._cleanup_hooks = list(self._cleanup_hooks.values()), {}
        for hook in hooks:
            try:
                await asyncio.wait_for(hook(), timeout=2.0)
            except Exception:
                logger.warning("stream cleanup hook failed", exc_info=True)
        for group in self.groups():
            with contextlib.suppress(Exception):
                await self.channel_layer.group_discard(group, self.channel_name)

    # --- outbound --------------------------------------------------------------------------

    async def send(self, frame: dict[str, Any]) -> None:
        if self.closed:
            return
        async with self._send_lock:
            await self._send_frame(frame)
        WS_MESSAGES_SENT.labels(type=str(frame.get("type", "?"))[:40]).inc()

    async def heartbeat(self) -> None:
        self._last_heartbeat = time.monotonic()
        # In a task of the stream: a slow Redis never delays the heartbeat itself.
        self.spawn(live_connections.record(self), name="connection-record")
        await self.send({"type": "heartbeat", "relay_lag": self.relay_lag, "ts": timezone.now().isoformat()})

    async def handle_layer_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == EVENT_TYPE:
            lag_ms = (time.time() - message.get("ts", time.time())) * 1000
            if lag_ms > settings.WS_SLOW_CONSUMER_LAG_MS:
                # Events are waiting longer than the bound: cut the stream rather than buffer
                # without limit; the client resumes from its cursor.
                WS_CONNECTION_REJECTED.labels(reason="slow_consumer").inc()
                logger.info("closing slow consumer", extra={"lag_ms": int(lag_ms), "user_id": self.user_id})
                await self.close(CloseCode.SLOW_CONSUMER, "slow consumer")
                return
            frame = message["frame"]
            src = registry.source(message.get("source"))
            if src is not None:
                if src.name in self._disabled_sources:
                    return
                frame = await src.on_event(self, frame)
            if frame is not None:
                await self.send(frame)
        elif kind == CONTROL_TYPE and message.get("action") == "close":
            await self.close(
                int(message.get("code", CloseCode.UNAUTHENTICATED)), str(message.get("reason", ""))
            )

    # --- periodic work ---------------------------------------------------------------------

    async def catch_up(self) -> None:
        for src in self.active_sources():
            await src.catch_up(self)

    async def tick(self) -> None:
        """Heartbeat, liveness, feature flags and relay fallback; called about once a second."""
        now = time.monotonic()
        relay_ok = await health.check()
        if not relay_ok:
            self.relay_lag = True
            if now - self._last_poll >= settings.RELAY_POLL_INTERVAL_MS / 1000:
                self._last_poll = now
                await self.catch_up()
        elif self.relay_lag:
            # Back from an outage: the layer may have lost our group memberships (Redis restarted
            # empty) and every publish made meanwhile. Resubscribe, then read what was missed.
            if await self._subscribe():
                self.relay_lag = False
                await self.catch_up()
                await self.heartbeat()
        if health.failures != self._failures_seen and not self.relay_lag:
            # A publish failed in this process (perhaps one meant for us) though Redis answers.
            self._failures_seen = health.failures
            await self.catch_up()
        await self._check_features()
        if self.closed:
            return
        for src in self.active_sources():
            await src.on_tick(self)
        if now - self._last_heartbeat >= settings.WS_PING_INTERVAL_MS / 1000:
            if not await database_sync_to_async(session_is_live)(self.session_id):
                await self.close(CloseCode.UNAUTHENTICATED, "session ended")
                return
            # Belt and braces: another process's publish may have been dropped by the relay
            # without anyone here noticing; one cheap indexed read per heartbeat bounds the delay.
            await self.catch_up()
            await self.heartbeat()
        if self.transport == "ws":
            silent_ms = (now - self.last_received) * 1000
            if silent_ms > settings.WS_PING_INTERVAL_MS + settings.WS_PING_TIMEOUT_MS:
                WS_CONNECTION_REJECTED.labels(reason="ping_timeout").inc()
                await self.close(CloseCode.PING_TIMEOUT, "ping timeout")

    async def _check_features(self) -> None:
        told: set[str] = set()  # one `feature.disabled` per feature, however many sources it has
        for src in registry.sources():
            if src.feature and src.name not in self._disabled_sources and not flags.is_enabled(src.feature):
                self._disabled_sources.add(src.name)
                if src.feature in told:
                    continue
                told.add(src.feature)
                detail = flags.FLAGS[src.feature].disabled_detail
                await self.send({"type": "feature.disabled", "feature": src.feature, "detail": detail})
                if self.params.get("_feature") == src.feature:
                    # A stream that exists only for this feature (e.g. /dm/sse) ends gracefully.
                    await self.close(CloseCode.FORBIDDEN, detail)

    async def run_ticks(self) -> None:
        interval = min(1.0, settings.RELAY_POLL_INTERVAL_MS / 1000, settings.WS_PING_INTERVAL_MS / 1000)
        while not self.closed:
            await asyncio.sleep(interval)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("stream tick failed")


def track(stream: Stream) -> None:
    open_streams.add(stream)
    force_disconnect.ensure_listening()


async def _close_local(channel: str, code: int, reason: str) -> None:
    stream = open_streams.by_channel(channel)
    if stream is not None:
        await stream.close(code, reason)
