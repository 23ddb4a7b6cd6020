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
import weakref
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.http import StreamingHttpResponse

from chatsite.accounts.authentication import stream_session
from chatsite.accounts.models import Session
from chatsite.api.errors import error_response, rate_limited
from chatsite.api.request import client_ip
from chatsite.metrics import (
    WS_CONNECTION_REJECTED,
)
from chatsite.realtime.close_codes import CloseCode
from chatsite.realtime.consumers import resilient_receive
from chatsite.realtime.lifecycle import StreamLease
from chatsite.realtime.stream import Stream

logger = logging.getLogger("chatsite.realtime")


async def authenticate(request) -> Session | None:
    """The live session of an SSE request: the same credentials as /ws (`stream_session`). A
    refusal counts in ws_connection_rejected_total{reason="unauthenticated"}, as on /ws."""
    session = await database_sync_to_async(stream_session)(
        authorization=request.headers.get("Authorization", ""), ticket=request.GET.get("ticket")
    )
    if session is None:
        WS_CONNECTION_REJECTED.labels(reason="unauthenticated").inc()
    return session


def _encode(frame: dict[str, Any]) -> bytes:
    # A frame with a cursor carries it as the SSE id, so a client that reconnects sends it back as
    # Last-Event-ID and resumes there (a browser's EventSource needs a new `?ticket=` for each
    # connection, so it reconnects through its own code, sending the header it kept).
    event_id = f"id: {frame['cursor']}\n" if "cursor" in frame else ""
    data = json.dumps(frame, separators=(",", ":"))
    return f"{event_id}event: {frame.get('type', 'message')}\ndata: {data}\n\n".encode()


async def sse_response(request, *, session: Session, feature: str | None = None) -> StreamingHttpResponse:
    lease = StreamLease("sse", client_ip(request))
    reason = lease.admit()
    if reason is not None:
        WS_CONNECTION_REJECTED.labels(reason=reason).inc()
        return error_response(rate_limited(5, "Too many connections."))  # with X-Retry-After
    try:
        response = await _stream_response(request, session=session, feature=feature, lease=lease)
    except BaseException:
        lease.release_slot()
        raise
    # The stream's `finally` releases the slot; a response dropped before its body is ever read
    # (the client left first) never runs it, so the slot also goes when the response is collected.
    weakref.finalize(response, lease.release_slot)
    return response


async def _stream_response(
    request, *, session: Session, feature: str | None, lease: StreamLease
) -> StreamingHttpResponse:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    # Bounded: what a client does not read is not buffered without end. Flow-controlled sources
    # (dm) never have more than their unacknowledged limit in it.
    # Two places beyond the limit are kept for the end: a `closing` frame and the end marker, so
    # the stream can always finish (and release what it holds) even when the client reads nothing.
    queue: asyncio.Queue[dict | None] = asyncio.Queue(maxsize=settings.SSE_MAX_QUEUED_FRAMES + 2)

    async def send_frame(frame: dict[str, Any]) -> None:
        if frame.get("type") == "closing":
            queue.put_nowait(frame)  # one of the two kept places
            return
        if queue.qsize() < settings.SSE_MAX_QUEUED_FRAMES:
            queue.put_nowait(frame)
        else:
            WS_CONNECTION_REJECTED.labels(reason="slow_consumer").inc()
            stream.mark_closed(CloseCode.SLOW_CONSUMER, "slow consumer")
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(
                {"type": "closing", "code": int(CloseCode.SLOW_CONSUMER), "reason": "slow consumer"}
            )
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
        client_ip=lease.ip,
        user_agent=request.headers.get("User-Agent", ""),
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
                await stream.close(CloseCode.INTERNAL_ERROR, "internal error")

    async def events():
        try:
            lease.attach(stream)
            yield b": stream open\n\n"
            if await lease.open():
                stream.spawn(pump(), name="pump")
            while True:  # a failed open left its closing frame and the end marker in the queue
                frame = await queue.get()
                if frame is None:
                    break
                yield _encode(frame)
        finally:
            await lease.release("client")

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
