"""The SSE base: a domain's async view returns `sse_response(...)` (e.g. GET /dm/sse).

Same `Stream` as the WebSocket (limits, heartbeats with relay_lag, replay, polling fallback),
written as `event: <type>` / `data: <json>` blocks. The outbound queue is bounded: a client that
does not read is a slow consumer and is cut, not buffered for without end.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import threading
import weakref
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.http import StreamingHttpResponse

from chatsite.accounts.authentication import token_from_header
from chatsite.accounts.models import Session
from chatsite.accounts.selectors import session_for_token
from chatsite.accounts.tickets import stream_ticket_redeem
from chatsite.api.errors import json_error
from chatsite.api.request import client_ip
from chatsite.metrics import (
    WS_CONNECTION_REJECTED,
    WS_CONNECTIONS_ACTIVE,
    WS_CONNECTIONS_TOTAL,
    WS_DISCONNECTIONS_TOTAL,
)
from chatsite.realtime.consumers import resilient_receive
from chatsite.realtime.limits import connections
from chatsite.realtime.stream import CLOSE_INTERNAL_ERROR, CLOSE_SLOW_CONSUMER, Stream, track

logger = logging.getLogger("chatsite.realtime")


class _Slot:
    """A connection slot, released exactly once: by the stream's `finally`, or, if the response
    is dropped before its body is ever read (the client left first), when it is collected."""

    def __init__(self, ip: str | None) -> None:
        self.ip = ip
        self._lock = threading.Lock()
        self._held = True

    def release(self) -> None:
        with self._lock:
            held, self._held = self._held, False
        if held:
            connections.release(self.ip)


async def authenticate(request) -> Session | None:
    """The live session from `Authorization: Bearer` or a single-use `?ticket=` (EventSource
    cannot set headers). `?token=` is not read: a bearer token in a URL reaches access logs."""
    token = token_from_header(request.headers.get("Authorization", ""))
    if token:
        return await database_sync_to_async(session_for_token)(token)
    ticket = request.GET.get("ticket")
    if ticket:
        return await database_sync_to_async(stream_ticket_redeem)(ticket=ticket)
    return None


def _encode(frame: dict[str, Any]) -> bytes:
    # A frame with a cursor carries it as the SSE id, so a browser's EventSource resumes from it
    # (Last-Event-ID) on reconnect.
    event_id = f"id: {frame['cursor']}\n" if "cursor" in frame else ""
    data = json.dumps(frame, separators=(",", ":"))
    return f"{event_id}event: {frame.get('type', 'message')}\ndata: {data}\n\n".encode()


async def sse_response(request, *, session: Session, feature: str | None = None) -> StreamingHttpResponse:
    ip = client_ip(request)
    reason = connections.admit(ip)
    if reason is not None:
        WS_CONNECTION_REJECTED.labels(reason=reason).inc()
        return json_error("RATE_LIMITED", "Too many connections.", retry_in_seconds=5)
    slot = _Slot(ip)
    try:
        response = await _stream_response(request, session=session, feature=feature, slot=slot)
    except BaseException:
        slot.release()
        raise
    weakref.finalize(response, slot.release)
    return response


async def _stream_response(
    request, *, session: Session, feature: str | None, slot: _Slot
) -> StreamingHttpResponse:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    # Bounded: what a client does not read is not buffered without end. Flow-controlled sources
    # (dm) never have more than their unacknowledged limit in it.
    queue: asyncio.Queue[dict | None] = asyncio.Queue(maxsize=settings.SSE_MAX_QUEUED_FRAMES)

    async def send_frame(frame: dict[str, Any]) -> None:
        try:
            queue.put_nowait(frame)
        except asyncio.QueueFull:
            WS_CONNECTION_REJECTED.labels(reason="slow_consumer").inc()
            stream.closed = True
            stream.close_reason = "slow consumer"
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait({"type": "closing", "code": CLOSE_SLOW_CONSUMER, "reason": "slow consumer"})
            queue.put_nowait(None)

    async def close_transport(code: int, reason: str) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(None)

    params = {k: v for k, v in request.GET.items() if k != "ticket"}
    if request.headers.get("Last-Event-ID"):
        params["last_event_id"] = request.headers["Last-Event-ID"]
    if feature:
        params["_feature"] = feature
    stream = Stream(
        transport="sse",
        user_id=session.user_id,
        session_id=session.pk,
        device_id=session.device_id,
        channel_layer=layer,
        channel_name=channel,
        send_frame=send_frame,
        close_transport=close_transport,
        params=params,
    )

    async def pump() -> None:
        receive = functools.partial(
            resilient_receive, functools.partial(layer.receive, channel), {"stream": stream}
        )
        while not stream.closed:
            message = await receive()
            try:
                await stream.handle_layer_message(message)
            except Exception:
                logger.exception("live event failed", extra={"event_type": message.get("type")})
                await stream.close(CLOSE_INTERNAL_ERROR, "internal error")

    async def events():
        counted = False
        try:
            track(stream)
            WS_CONNECTIONS_TOTAL.labels(transport="sse").inc()
            WS_CONNECTIONS_ACTIVE.labels(transport="sse").inc()
            counted = True
            yield b": stream open\n\n"
            try:
                await stream.open()
            except Exception:
                logger.exception("sse open failed")
                yield _encode({"type": "closing", "code": CLOSE_INTERNAL_ERROR, "reason": "internal error"})
                stream.close_reason = "internal error"
                return
            stream.spawn(stream.run_ticks(), name="ticks")
            stream.spawn(pump(), name="pump")
            while True:
                frame = await queue.get()
                if frame is None:
                    break
                yield _encode(frame)
        finally:
            slot.release()
            if counted:
                WS_CONNECTIONS_ACTIVE.labels(transport="sse").dec()
                WS_DISCONNECTIONS_TOTAL.labels(
                    transport="sse", reason=(stream.close_reason or "client")[:40]
                ).inc()
            await stream.cleanup()

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
