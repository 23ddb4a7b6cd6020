"""The one WebSocket endpoint, /ws: authenticate, enforce limits, dispatch frames to domains.

Frame protocol (docs/realtime.md): every frame is a JSON object with a "type". Clients may add a
"ref" that the server echoes on the reply or error. Errors are {"type": "error", "code", "detail"}
with the REST error codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings

from chatsite.api import flags, json_input
from chatsite.api.circuit import database_failure
from chatsite.api.errors import ApiError
from chatsite.metrics import (
    WS_CONNECTION_REJECTED,
    WS_MESSAGES_RECEIVED,
)
from chatsite.realtime import registry
from chatsite.realtime.close_codes import CloseCode
from chatsite.realtime.lifecycle import StreamLease
from chatsite.realtime.limits import InboundWindow
from chatsite.realtime.relay import health
from chatsite.realtime.stream import (
    _LAYER_ERRORS,
    Stream,
)

logger = logging.getLogger("chatsite.realtime")


async def _receive_cancellable(receive) -> dict:
    """`await receive()`, except that cancelling it always ends it.

    Fix: on Python 3.11, asyncio.wait_for (which redis-py uses while it opens a connection)
    swallows a cancellation that lands just as its inner future completes; channels_redis then
    keeps polling BZPOPMIN for a message that never comes, so a consumer whose client left right
    after connecting never finished (daphne killed it after application_close_timeout; uvicorn
    never does). Receiving in an inner task lets us cancel it again until it has really stopped.
    """
    inner = asyncio.ensure_future(receive())
    try:
        return await asyncio.shield(inner)
    except asyncio.CancelledError:
        while not inner.done():
            inner.cancel()
            await asyncio.wait([inner], timeout=0.05)
        with contextlib.suppress(BaseException):
            inner.result()  # retrieved, so asyncio does not log "exception never retrieved"
        raise


async def resilient_receive(receive, stream_holder: dict) -> dict:
    """The channel layer's receive, surviving Redis outages.

    channels' own loop would let a Redis error kill the consumer (and every socket with it).
    Here an error marks the relay failed and waits; the stream's tick meanwhile polls the
    database and resubscribes once Redis answers again.
    """
    delay = 0.2
    while True:
        try:
            return await _receive_cancellable(receive)
        except _LAYER_ERRORS as exc:
            # The relay's own health logs the transition once; per-retry detail stays at debug.
            logger.debug("channel layer receive failed: %r", exc)
            health.mark_failed()
            stream = stream_holder.get("stream")
            if stream is not None:
                stream.relay_lag = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


class GatewayConsumer(AsyncJsonWebsocketConsumer):
    async def __call__(self, scope, receive, send):
        # channels.consumer.AsyncConsumer.__call__, with the layer receive made resilient.
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self._holder: dict[str, Stream] = {}
        channel_receive = functools.partial(
            resilient_receive, functools.partial(self.channel_layer.receive, self.channel_name), self._holder
        )
        self.base_send = send
        # What this socket holds, released once on every way out (a disconnect, a failure
        # anywhere in dispatch, cancellation by the server): StreamLease.release.
        self.stream: Stream | None = None
        self.lease = StreamLease("ws", self.scope.get("client_ip"))
        self._close_code: int | None = None
        try:
            await await_many_dispatch([receive, channel_receive], self.dispatch)
        except StopConsumer:
            pass
        finally:
            await self._release()

    async def dispatch(self, message):
        # channels' dispatch hops to the sync thread to close stale DB connections before every
        # message (a thread round trip per frame and per event). Every database call here goes
        # through database_sync_to_async, which does that itself, so the hop is skipped.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        try:
            await handler(message)
        except Exception:
            if message["type"] != "websocket.receive" or self.stream is None:
                raise  # the consumer ends; __call__'s finally releases what it holds (daphne: 1011)
            # A failure of ours while reading one frame: the client gets an error frame and the
            # socket stays usable, as for a failing frame handler.
            logger.exception("frame failed")
            await self.stream.send(ApiError("INTERNAL_ERROR").frame())

    # --- lifecycle -------------------------------------------------------------------------

    async def connect(self) -> None:
        self.inbound = InboundWindow()
        await self.accept()
        session = self.scope.get("auth_session")
        if session is None:
            return await self._reject("unauthenticated", CloseCode.UNAUTHENTICATED, "authentication required")
        reason = self.lease.admit()
        if reason is not None:
            return await self._reject(
                reason,
                CloseCode.RATE_LIMITED if reason == "ip_limit" else CloseCode.UNAVAILABLE,
                "too many connections",
            )
        params = dict(self.scope.get("query_params", {}))
        self.stream = Stream(
            transport="ws",
            user_id=session.user_id,
            session_id=session.pk,
            device_id=session.device_id,
            channel_layer=self.channel_layer,
            channel_name=self.channel_name,
            send_frame=self.send_json,
            close_transport=self._close_transport,
            params=params,
            client_ip=self.lease.ip,
            user_agent=self.scope.get("user_agent", ""),
        )
        self._holder["stream"] = self.stream
        self.lease.attach(self.stream)
        await self.stream.send(
            {
                "type": "hello",
                "user_id": session.user_id,
                "session_id": str(session.pk),
                "device_id": str(session.device_id) if session.device_id else None,
                "heartbeat_interval_ms": settings.WS_PING_INTERVAL_MS,
                "ping_timeout_ms": settings.WS_PING_TIMEOUT_MS,
                # What keeps this connection open (docs/realtime.md, "Staying connected").
                "keepalive": {
                    "idle_timeout_ms": settings.WS_PING_INTERVAL_MS + settings.WS_PING_TIMEOUT_MS,
                    "rule": (
                        "Answer the server's WebSocket protocol pings (every client library does) or "
                        'send any frame, e.g. {"type": "ping"}; a connection with neither for '
                        "idle_timeout_ms is closed 4408."
                    ),
                },
                "limits": {
                    "max_msgs_per_10s": settings.MAX_MSGS_PER_10S,
                    "max_bytes_per_10s": settings.MAX_BYTES_PER_10S,
                    "max_frame_bytes": settings.WS_MAX_FRAME_BYTES,
                },
            }
        )
        await self.lease.open()

    async def _reject(self, reason: str, code: int, detail: str) -> None:
        WS_CONNECTION_REJECTED.labels(reason=reason).inc()
        logger.info("websocket rejected", extra={"reason": reason, "ip": self.lease.ip})
        await self.send_json({"type": "closing", "code": int(code), "reason": detail})
        await self.close(int(code))

    async def _close_transport(self, code: int, reason: str) -> None:
        await self.close(int(code))  # autobahn refuses an int subclass such as CloseCode

    async def disconnect(self, code: int) -> None:
        self._close_code = code
        await self._release()

    async def _release(self) -> None:
        code = self._close_code if self._close_code is not None else CloseCode.INTERNAL_ERROR
        await self.lease.release(f"client_{int(code)}")

    # --- inbound ---------------------------------------------------------------------------

    async def websocket_keepalive(self, message) -> None:
        """A protocol-level pong (or a client's ping) that chatsite.server passes on: the client is
        alive even if it sends no frames. Other ASGI servers never send this; there, a client must
        send a frame (any, e.g. `ping`) within the idle timeout."""
        if self.stream is not None:
            self.stream.last_received = time.monotonic()

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        if self.stream is None or self.stream.closed:
            return
        raw = text_data if text_data is not None else (bytes_data or b"")
        size = len(raw.encode() if isinstance(raw, str) else raw)
        self.stream.last_received = time.monotonic()
        # Size first: an oversized frame always gets its documented 4413, whatever the budget.
        if size > settings.WS_MAX_FRAME_BYTES:
            WS_CONNECTION_REJECTED.labels(reason="frame_too_large").inc()
            await self.stream.send(ApiError("PAYLOAD_TOO_LARGE", "Frame too large.").frame())
            return await self.stream.close(CloseCode.TOO_LARGE, "frame too large")
        violated = self.inbound.add(size)
        if violated:
            WS_CONNECTION_REJECTED.labels(reason=violated).inc()
            await self.stream.send(
                ApiError("RATE_LIMITED", f"Over {violated.replace('_', ' ')} limit per 10 s.").frame()
            )
            return await self.stream.close(CloseCode.RATE_LIMITED, "rate limit")
        try:
            # One parser with a depth limit: plain json.loads raises RecursionError on ~6 KB of
            # nested brackets, which escaped receive() and leaked this socket's connection slots.
            frame = json_input.loads(raw)
        except ApiError as err:
            WS_MESSAGES_RECEIVED.labels(type="invalid").inc()
            return await self.stream.send(err.frame())
        except (ValueError, UnicodeDecodeError):
            WS_MESSAGES_RECEIVED.labels(type="invalid").inc()
            return await self.stream.send(ApiError("BAD_REQUEST", "Frames must be JSON objects.").frame())
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            WS_MESSAGES_RECEIVED.labels(type="invalid").inc()
            return await self.stream.send(ApiError("BAD_REQUEST", 'A frame needs a string "type".').frame())
        await self.receive_json(frame)

    async def receive_json(self, content: dict[str, Any], **kwargs) -> None:
        frame_type = content["type"]
        ref = {"ref": content["ref"]} if "ref" in content else {}
        spec = registry.frame_spec(frame_type)
        WS_MESSAGES_RECEIVED.labels(
            type=frame_type[:40] if spec or frame_type in ("ping", "pong") else "unknown"
        ).inc()
        if frame_type == "ping":
            return await self.stream.send({"type": "pong", **ref})
        if frame_type == "pong":
            return None
        if spec is None:
            return await self.stream.send(
                ApiError("BAD_REQUEST", f"Unknown frame type {frame_type!r}.").frame(**ref)
            )
        try:
            if spec.feature:
                flags.require_feature(spec.feature)
            reply = await spec.handler(self.stream, content)
        except ApiError as err:
            return await self.stream.send(err.frame(**ref))
        except Exception as exc:
            if (outage := database_failure(exc)) is not None:  # counted by the database breaker
                return await self.stream.send(outage.frame(**ref))
            logger.exception("frame handler failed", extra={"frame_type": frame_type})
            return await self.stream.send(ApiError("INTERNAL_ERROR").frame(**ref))
        if reply is not None:
            await self.stream.send({**reply, **ref})

    # --- channel layer ---------------------------------------------------------------------

    async def realtime_event(self, message: dict[str, Any]) -> None:
        await self._layer_message(message)

    async def realtime_control(self, message: dict[str, Any]) -> None:
        await self._layer_message(message)

    async def _layer_message(self, message: dict[str, Any]) -> None:
        if self.stream is None:
            return
        try:
            await self.stream.handle_layer_message(message)
        except Exception:
            # The client resumes from its cursor; the socket is not left half-working.
            logger.exception("live event failed", extra={"event_type": message.get("type")})
            await self.stream.close(CloseCode.INTERNAL_ERROR, "internal error")
