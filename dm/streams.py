"""The device queue as a live feed of every device-bound stream (/ws and /dm/sse).

Each stream keeps a cursor: the last queue position it sent. On open it replays everything after
the client's cursor from PostgreSQL, then goes live. A live event at or before the cursor is a
duplicate and dropped; one beyond cursor + 1 overtook an earlier one (publishes of concurrent
sends race each other after their commits) and is held; if the gap is still open after
DM_REORDER_WAIT_MS (the relay dropped something), the stream reads the database instead. So each
stream delivers every queued message once, in order, whether the relay works or not.

Flow control: at most DM_MAX_UNACKED_PER_STREAM messages are in flight on a stream, counted from
the later of the device's acknowledged position and the position the stream started from (the
client's cursor: it has everything up to there). At the limit the stream pauses, it is never cut:
live events are left in the database, and the replay resumes as acknowledgements arrive (a
`dm.ack` frame, or `POST /dm/ack`, which notifies the device's stream after its commit). The
replay runs as a task of the stream, so frames (acks among them) are read while it runs.

Concurrency: all of a feed's state lives on the event loop. `DeviceFeed.lock` orders the sends of
a replay page against live events; it is never held across a database read, and a live event
never waits for a replay (it leaves the message to it), so one device's replay cannot delay
another sender's `dm.sent`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from chatsite.api import params as int_params
from chatsite.api.errors import ApiError
from chatsite.realtime import registry
from chatsite.realtime.stream import Stream
from dm.metrics import DM_DELIVERY_LATENCY, DM_STREAM_PAUSES
from dm.selectors.devices import acked_position
from dm.services import devices as device_services
from dm.services import messages as message_services

FEED = "dm"
# Published by deliveries_ack after its commit; consumed here, never sent to a client.
ACK_POSITION = message_services.ACK_POSITION_FRAME


@dataclass
class DeviceFeed:
    """Per-stream state of the device queue feed (event loop only)."""

    # The last queue position sent on this stream: the next frame it may send is cursor + 1.
    cursor: int
    # Where the stream started (the client's cursor, or a dm.sync `since`): the client has
    # everything up to there, so in-flight messages are counted from max(acked, base).
    base: int = 0
    # The device's acknowledged position as this stream last knew it.
    acked: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Live events that overtook an earlier one, by cursor, held until the gap closes.
    held: dict[int, dict[str, Any]] = field(default_factory=dict)
    gap_timer: asyncio.Task | None = None
    # Live frames are recorded as handed over (`dm_delivery.sent_at`) in batches, once per tick:
    # `sent_pending` is the highest position sent live, `sent_flushed` the highest recorded.
    sent_pending: int = 0
    sent_flushed: int = 0
    # The replay task, and what drives it: `missed` says the database may hold more than was
    # sent (set by whoever skips a live event or asks for a read); `wake` is set by an ack or a
    # new request; `settled` is set while no replay runs or it waits for acknowledgements.
    replay_task: asyncio.Task | None = None
    missed: bool = False
    paused: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    settled: asyncio.Event = field(default_factory=asyncio.Event)

    def room(self) -> int:
        """How many more messages may be sent before the stream must wait for an ack."""
        in_flight = max(0, self.cursor - max(self.acked, self.base))
        return settings.DM_MAX_UNACKED_PER_STREAM - in_flight

    def replaying(self) -> bool:
        return self.replay_task is not None and not self.replay_task.done()

    def acknowledged(self, position: int) -> None:
        if position > self.acked:
            self.acked = position
            self.wake.set()

    def restart_at(self, position: int) -> None:
        """Start over from `position` (a dm.sync): the client has everything up to there."""
        self.cursor = self.base = position
        self.held.clear()
        self.cancel_gap_timer()

    def cancel_gap_timer(self) -> None:
        if self.gap_timer is not None and not self.gap_timer.done():
            self.gap_timer.cancel()
        self.gap_timer = None


# Reads and writes for the stream run on the thread pool, so many streams read concurrently.
_read_page = database_sync_to_async(message_services.queue_page_read, thread_sensitive=False)
_acked_position = database_sync_to_async(acked_position, thread_sensitive=False)
_device_seen = database_sync_to_async(device_services.device_seen, thread_sensitive=False)
_mark_sent = database_sync_to_async(message_services.deliveries_mark_sent, thread_sensitive=False)


def _parse_cursor(value: Any) -> int | None:
    """The stream's `?cursor=` / Last-Event-ID: ASCII digits within 64 bits, else None (the stream
    then starts after the acknowledged position)."""
    if value is None:
        return None
    try:
        return int_params.parse_int(value, field="cursor")
    except ApiError:
        return None


def new_feed(stream: Stream, *, cursor: int, acked: int) -> DeviceFeed:
    feed = DeviceFeed(cursor=cursor, base=cursor, acked=acked, sent_pending=cursor, sent_flushed=cursor)
    stream.state[FEED] = feed
    return feed


class DeviceQueueSource(registry.StreamSource):
    name = "dm"
    feature = "dm"

    async def on_open(self, stream: Stream) -> None:
        if stream.device_id is None:
            return
        await _device_seen(device_id=stream.device_id)
        acked = await _acked_position(stream.device_id)
        # Last-Event-ID first: an SSE client sends it on reconnect, while `?cursor=` may be left in
        # the URL from its first connection.
        cursor = _parse_cursor(stream.params.get("last_event_id") or stream.params.get("cursor"))
        new_feed(stream, cursor=acked if cursor is None else cursor, acked=acked)
        self.request_replay(stream)

    # --- replay ----------------------------------------------------------------------------

    def request_replay(self, stream: Stream) -> DeviceFeed | None:
        """Read what the database holds after the stream's cursor, in a task of the stream (one
        at a time; a request while one runs makes it read once more)."""
        feed: DeviceFeed | None = stream.state.get(FEED)
        if feed is None or stream.closed:
            return feed
        feed.missed = True
        feed.settled.clear()
        feed.wake.set()
        if not feed.replaying():
            feed.replay_task = stream.spawn(self._replay(stream, feed), name="dm replay")
        return feed

    async def _replay(self, stream: Stream, feed: DeviceFeed) -> None:
        try:
            while not stream.closed:
                if not feed.missed:
                    async with feed.lock:
                        for position in [c for c in feed.held if c <= feed.cursor]:
                            del feed.held[position]
                        await self._release_held(stream, feed)  # may ask for one more read
                    if not feed.missed:
                        return  # no await between here and the task's end: a new request spawns anew
                    continue
                if feed.room() <= 0:
                    # Paused, not cut: wait for an acknowledgement (or a dm.sync) and go on.
                    if not feed.paused:
                        feed.paused = True
                        DM_STREAM_PAUSES.inc()
                    feed.wake.clear()
                    feed.settled.set()
                    await feed.wake.wait()
                    continue
                feed.paused = False
                feed.missed = False
                after, limit = feed.cursor, min(settings.DM_FETCH_PAGE_SIZE, feed.room())
                try:
                    page = await _read_page(device_id=stream.device_id, after=after, limit=limit)
                except Exception:
                    feed.missed = True  # on_tick starts the replay again
                    raise
                async with feed.lock:  # sends only: the read above took no lock
                    if feed.cursor != after:
                        feed.missed = True  # a dm.sync moved the cursor meanwhile: read again
                        continue
                    for frame in page.frames:
                        if stream.closed:
                            return
                        await self._deliver(stream, feed, frame)
                    feed.sent_flushed = max(feed.sent_flushed, page.cursor)  # the read recorded it
                    if page.has_more:
                        feed.missed = True
        finally:
            feed.paused = False
            feed.settled.set()

    async def catch_up(self, stream: Stream) -> None:
        feed: DeviceFeed | None = stream.state.get(FEED)
        if feed is not None:  # acknowledgements may have come over REST meanwhile
            feed.acknowledged(await _acked_position(stream.device_id))
        self.request_replay(stream)

    # --- live events -----------------------------------------------------------------------

    async def on_event(self, stream: Stream, frame: dict[str, Any]) -> dict[str, Any] | None:
        feed: DeviceFeed | None = stream.state.get(FEED)
        if frame.get("type") == ACK_POSITION:
            if feed is not None:
                feed.acknowledged(int(frame["acked_seq"]))
            return None
        if frame.get("type") != "dm.message":
            return frame
        if feed is None:
            # The stream is still opening (an in-process event can arrive during on_open): the
            # replay on_open starts reads this committed message from the database.
            return None
        if frame["cursor"] <= feed.cursor:
            return None  # already sent (a replay overlapped the live path)
        if feed.replaying() or feed.room() <= 0:
            # The replay reads it from the database (paused: once acknowledgements come). Never
            # wait for the replay here: this may be another sender's call stack.
            self.request_replay(stream)
            return None
        async with feed.lock:
            if frame["cursor"] <= feed.cursor:
                return None
            if frame["cursor"] > feed.cursor + 1:
                if len(feed.held) >= feed.room():
                    self.request_replay(stream)  # more held than may be sent: read instead
                    return None
                feed.held[frame["cursor"]] = frame
                if feed.gap_timer is None or feed.gap_timer.done():
                    feed.gap_timer = stream.spawn(self._close_gap(stream, feed), name="dm gap")
                return None
            await self._deliver_live(stream, feed, frame)
            await self._release_held(stream, feed)
        return None

    async def _deliver(self, stream: Stream, feed: DeviceFeed, frame: dict[str, Any]) -> None:
        await stream.send(frame)
        feed.cursor = frame["cursor"]
        created = datetime.fromisoformat(frame["created_at"]).timestamp()
        DM_DELIVERY_LATENCY.observe(max(0.0, time.time() - created))

    async def _deliver_live(self, stream: Stream, feed: DeviceFeed, frame: dict[str, Any]) -> None:
        """A live frame; its hand-over is recorded by the next tick (a replay page records its own)."""
        await self._deliver(stream, feed, frame)
        feed.sent_pending = max(feed.sent_pending, feed.cursor)

    async def _release_held(self, stream: Stream, feed: DeviceFeed) -> None:
        while feed.cursor + 1 in feed.held:
            if feed.room() <= 0:
                feed.held.clear()  # still in the database; the paused replay reads them
                self.request_replay(stream)
                break
            await self._deliver_live(stream, feed, feed.held.pop(feed.cursor + 1))
        if not feed.held:
            feed.cancel_gap_timer()  # the gap closed: nothing to read

    async def _close_gap(self, stream: Stream, feed: DeviceFeed) -> None:
        """If the gap is still open after a short wait, the relay lost the event: read the
        database, which has everything."""
        await asyncio.sleep(settings.DM_REORDER_WAIT_MS / 1000)
        if feed.held and not stream.closed:
            self.request_replay(stream)

    async def on_tick(self, stream: Stream) -> None:
        feed: DeviceFeed | None = stream.state.get(FEED)
        if feed is None:
            return
        if feed.missed and not feed.replaying():
            self.request_replay(stream)  # a replay that failed (e.g. a database error) goes on
        if feed.sent_pending > feed.sent_flushed:
            # Batched: one UPDATE per device per tick records when live messages were handed over.
            await _mark_sent(device_id=stream.device_id, up_to_seq=feed.sent_pending)
            feed.sent_flushed = feed.sent_pending


source = DeviceQueueSource()


def register() -> None:
    registry.register_source(source)
