"""The lifecycle of one live stream, whatever its transport: what a /ws consumer and an SSE
response take when a stream starts, and give back, once, on every way out.

    lease = StreamLease("ws", ip)
    if (refused := lease.admit()) is not None: ...      # a per-process connection slot
    lease.attach(stream)                                # in-process index, gauges
    if not await lease.open(): ...                      # subscribe, replay, ticks; 1011 on failure
    ...
    await lease.release(fallback_reason)                # every exit path (a `finally`)
"""

from __future__ import annotations

import logging
import threading

from chatsite.metrics import WS_CONNECTIONS_ACTIVE, WS_CONNECTIONS_TOTAL, WS_DISCONNECTIONS_TOTAL
from chatsite.realtime.close_codes import CloseCode
from chatsite.realtime.limits import connections
from chatsite.realtime.stream import Stream, track

logger = logging.getLogger("chatsite.realtime")


def disconnect_label(stream: Stream, fallback: str) -> str:
    """A bounded label: the close code's name when the server closed the stream (`slow_consumer`,
    `unauthenticated`, …), else the transport's own (`client_1000`, `client`). Never the
    human-readable reason, which may be a sentence."""
    if stream.close_code is None:
        return fallback
    try:
        return CloseCode(stream.close_code).name.lower()
    except ValueError:
        return f"code_{stream.close_code}"


class StreamLease:
    def __init__(self, transport: str, ip: str | None) -> None:
        self.transport = transport
        self.ip = ip
        self.stream: Stream | None = None
        self._lock = threading.Lock()  # release_slot() may run in a garbage-collector callback
        self._slot = False
        self._released = False

    def admit(self) -> str | None:
        """Take a connection slot (MAX_CONNS_PER_IP, MAX_TOTAL_CONNECTIONS), or say why not."""
        reason = connections.admit(self.ip)
        self._slot = reason is None
        return reason

    def attach(self, stream: Stream) -> None:
        self.stream = stream
        track(stream)
        WS_CONNECTIONS_TOTAL.labels(transport=self.transport).inc()
        WS_CONNECTIONS_ACTIVE.labels(transport=self.transport).inc()

    async def open(self) -> bool:
        """Open the stream (register, subscribe, heartbeat, start replays) and start its ticks.
        A failure closes it 1011 (the client resumes from its cursor) and returns False."""
        assert self.stream is not None
        try:
            await self.stream.open()
        except Exception:
            logger.exception("stream open failed", extra={"transport": self.transport})
            await self.stream.close(CloseCode.INTERNAL_ERROR, "internal error")
            return False
        self.stream.spawn(self.stream.run_ticks(), name="ticks")
        return True

    def release_slot(self) -> None:
        """Give the connection slot back, once; synchronous, so nothing can keep it taken."""
        with self._lock:
            held, self._slot = self._slot, False
        if held:
            connections.release(self.ip)

    async def release(self, fallback_reason: str) -> None:
        """Give back everything, once: the slot first, then the gauge, then the stream's
        registrations and tasks (Stream.cleanup)."""
        self.release_slot()
        if self._released:
            return
        self._released = True
        stream = self.stream
        if stream is None:
            return
        WS_CONNECTIONS_ACTIVE.labels(transport=self.transport).dec()
        WS_DISCONNECTIONS_TOTAL.labels(
            transport=self.transport, reason=disconnect_label(stream, fallback_reason)
        ).inc()
        await stream.cleanup()
