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
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
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
from chatsite.realtime.stream import CLOSE_SLOW_CONSUMER, Stream, track, untrack

SSE_QUEUE_MAX = 1000


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
    layer = get_channel_layer()
    channel = await layer.new_channel()
    queue: asyncio.Queue[dict | None] = asyncio.Queue(maxsize=SSE_QUEUE_MAX)

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

    params = {k: v for k, v in request.GET.items() if k != "token"}
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
            await stream.handle_layer_message(await receive())

    async def events():
        track(stream)
        WS_CONNECTIONS_TOTAL.labels(transport="sse").inc()
        WS_CONNECTIONS_ACTIVE.labels(transport="sse").inc()
        tasks: list[asyncio.Task] = []
        try:
            yield b": stream open\n\n"
            await stream.open()
            await stream.heartbeat()
            tasks = [asyncio.create_task(stream.run_ticks()), asyncio.create_task(pump())]
            while True:
                frame = await queue.get()
                if frame is None:
                    break
                yield _encode(frame)
        finally:
            for task in tasks:
                task.cancel()
            untrack(stream)
            await stream.cleanup()
            connections.release(ip)
            WS_CONNECTIONS_ACTIVE.labels(transport="sse").dec()
            WS_DISCONNECTIONS_TOTAL.labels(
                transport="sse", reason=(stream.close_reason or "client")[:40]
            ).inc()

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
