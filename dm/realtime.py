"""dm's plug-in to the realtime gateway: the device queue as a live feed, and dm.* frames.

Each device-bound stream keeps a cursor (the last queue position it sent). On open it replays
everything after the client's cursor from PostgreSQL, then goes live. A live event at or before
the cursor is a duplicate and dropped; one beyond cursor + 1 overtook an earlier one and is held;
if the gap is still open after DM_REORDER_WAIT_MS (the relay dropped something), the gap is read
from the database. So each stream delivers every queued message once, in order, whether the relay
works or not.

Flow control: at most DM_MAX_UNACKED_PER_STREAM messages are in flight on a stream, counted from
the later of the device's acknowledged position and the position the stream started from (the
client's cursor: it has everything up to there). At the limit the stream pauses, it is never cut:
live events are left in the database, and the replay resumes as acknowledgements arrive (a
`dm.ack` frame, or `POST /dm/ack`, which notifies the device's stream after its commit). The
replay runs as a task of the stream, so frames (acks among them) are read while it runs.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from chatsite.api import params as int_params
from chatsite.api import throttling
from chatsite.api.errors import ApiError
from chatsite.realtime import registry, relay
from chatsite.realtime.stream import Stream
from dm.metrics import DM_DELIVERY_LATENCY, DM_STREAM_PAUSES
from dm.models import Device, DeviceQueue
from dm.selectors.messages import queued_after
from dm.serializers_messages import AckSerializer, SyncSerializer, parse_send
from dm.services import messages as message_services

FEED = "dm"
# Published by deliveries_ack after its commit; consumed here, never sent to a client.
ACK_POSITION = message_services.ACK_POSITION_FRAME


@dataclass
class DeviceFeed:
    """Per-stream state of the device queue feed. Every field is read and written on the event
    loop only; `lock` orders a replay page against live events (no await holds it but a page's
    read and sends)."""

    cursor: int  # the last queue position sent on this stream
    # Where the stream started (the client's cursor, or a dm.sync `since`): the client has
    # everything up to there, so in-flight messages are counted from max(acked, base).
    base: int = 0
    # The device's acknowledged position as this stream last knew it.
    acked: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Live events that overtook an earlier one (publishes of concurrent sends race each other
    # after their commits); held briefly so the earlier one can arrive and order is kept.
    held: dict[int, dict[str, Any]] = field(default_factory=dict)
    gap_timer: asyncio.Task | None = None
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


# Reads for the stream run on the thread pool so many streams read concurrently.
_queued_after = database_sync_to_async(queued_after, thread_sensitive=False)


def _device_for_stream(stream: Stream) -> Device:
    if stream.device_id is None:
        raise ApiError("DEVICE_REQUIRED")
    device = Device.objects.filter(pk=stream.device_id, user_id=stream.user_id).select_related("user").first()
    if device is None or device.status != Device.Status.ACTIVE:
        raise ApiError("DEVICE_REVOKED")
    return device


def _acked_position(device_id) -> int:
    queue = DeviceQueue.objects.filter(device_id=device_id).only("acked_seq").first()
    return queue.acked_seq if queue else 0


def _open_feed(device_id) -> int:
    """The device is seen now; its stream starts after the last acknowledged position."""
    Device.objects.filter(pk=device_id).update(last_seen_at=timezone.now())
    return _acked_position(device_id)


_acked_position_async = database_sync_to_async(_acked_position, thread_sensitive=False)


def _parse_cursor(value: Any) -> int | None:
    """The stream's `?cursor=` / Last-Event-ID: ASCII digits within 64 bits, else None (the stream
    then starts after the acknowledged position)."""
    if value is None:
        return None
    try:
        return int_params.parse_int(value, field="cursor")
    except ApiError:
        return None


class DeviceQueueSource(registry.StreamSource):
    name = "dm"
    feature = "dm"

    async def on_open(self, stream: Stream) -> None:
        if stream.device_id is None:
            return
        acked = await database_sync_to_async(_open_feed, thread_sensitive=False)(stream.device_id)
        cursor = _parse_cursor(stream.params.get("cursor") or stream.params.get("last_event_id"))
        if cursor is None:
            cursor = acked
        stream.state[FEED] = DeviceFeed(
            cursor=cursor, base=cursor, acked=acked, sent_pending=cursor, sent_flushed=cursor
        )
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
                async with feed.lock:
                    feed.missed = False
                    limit = min(settings.DM_FETCH_PAGE_SIZE, feed.room())
                    try:
                        page = await _queued_after(
                            device_id=stream.device_id, cursor=feed.cursor, limit=limit
                        )
                    except Exception:
                        feed.missed = True  # on_tick starts the replay again
                        raise
                    for delivery in page:
                        if stream.closed:
                            return
                        frame = message_services.message_frame(delivery, delivery.message)
                        await self._deliver(stream, feed, frame)
                    if len(page) == limit:
                        feed.missed = True  # a full page: there may be more
        finally:
            feed.paused = False
            feed.settled.set()

    async def catch_up(self, stream: Stream) -> None:
        feed: DeviceFeed | None = stream.state.get(FEED)
        if feed is not None:  # acknowledgements may have come over REST meanwhile
            feed.acknowledged(await _acked_position_async(stream.device_id))
        self.request_replay(stream)

    # --- live events -----------------------------------------------------------------------

    async def on_event(self, stream: Stream, frame: dict[str, Any]) -> dict[str, Any] | None:
        feed: DeviceFeed | None = stream.state.get(FEED)
        if frame.get("type") == ACK_POSITION:
            if feed is not None:
                feed.acknowledged(int(frame["acked_seq"]))
            return None
        if frame.get("type") != "dm.message" or feed is None:
            return frame
        async with feed.lock:
            if frame["cursor"] <= feed.cursor:
                return None  # already sent (a replay overlapped the live path)
            if feed.replaying() or feed.room() <= 0:
                # The replay reads it from the database (paused: once acknowledgements come).
                self.request_replay(stream)
                return None
            if frame["cursor"] > feed.cursor + 1:
                if len(feed.held) >= feed.room():
                    self.request_replay(stream)  # more held than may be sent: read instead
                    return None
                feed.held[frame["cursor"]] = frame
                if feed.gap_timer is None or feed.gap_timer.done():
                    feed.gap_timer = stream.spawn(self._close_gap(stream, feed), name="dm gap")
                return None
            await self._deliver(stream, feed, frame)
            await self._release_held(stream, feed)
        return None

    async def _deliver(self, stream: Stream, feed: DeviceFeed, frame: dict[str, Any]) -> None:
        await stream.send(frame)
        feed.cursor = frame["cursor"]
        feed.sent_pending = max(feed.sent_pending, feed.cursor)
        created = datetime.fromisoformat(frame["created_at"]).timestamp()
        DM_DELIVERY_LATENCY.observe(max(0.0, time.time() - created))

    async def _release_held(self, stream: Stream, feed: DeviceFeed) -> None:
        while feed.cursor + 1 in feed.held:
            if feed.room() <= 0:
                feed.held.clear()  # still in the database; the paused replay reads them
                self.request_replay(stream)
                return
            await self._deliver(stream, feed, feed.held.pop(feed.cursor + 1))

    async def _close_gap(self, stream: Stream, feed: DeviceFeed) -> None:
        """If the gap is still open after a short wait, the relay lost the event: read the
        database, which has everything."""
        await asyncio.sleep(settings.DM_REORDER_WAIT_MS / 1000)
        if feed.held and not stream.closed:
            self.request_replay(stream)

    async def on_tick(self, stream: Stream) -> None:
        feed: DeviceFeed | None = stream.state.get(FEED)
        if feed is not None and feed.missed and not feed.replaying():
            self.request_replay(stream)  # a replay that failed (e.g. a database error) goes on
        if feed is not None and feed.sent_pending > feed.sent_flushed:
            # Batched: one UPDATE per device per tick records when messages were handed over.
            await database_sync_to_async(message_services.deliveries_mark_sent, thread_sensitive=False)(
                device_id=stream.device_id, up_to_seq=feed.sent_pending
            )
            feed.sent_flushed = feed.sent_pending


source = DeviceQueueSource()


# --- Frames on /ws: the same services as REST ----------------------------------------------


def _validated(serializer_class, frame: dict[str, Any]) -> dict[str, Any]:
    serializer = serializer_class(data=frame)
    if not serializer.is_valid():
        raise ApiError("VALIDATION_ERROR", errors=serializer.errors)
    return serializer.validated_data


def _store_sync(stream: Stream, data: dict[str, Any]) -> message_services.SendResult:
    request = message_services.send_prepare(
        sender_id=stream.user_id,
        sender_device_id=stream.device_id,
        conversation_id=data["conversation_id"],
        client_message_id=data["client_message_id"],
        envelopes=data["envelopes"],
    )
    return message_services.message_store(request, publish=False)


def _send_sync(stream: Stream, data: dict[str, Any]) -> message_services.SendResult:
    """The whole service, rate limit included (used when the fast check refused)."""
    return message_services.message_send(
        sender_id=stream.user_id,
        sender_device_id=stream.device_id,
        conversation_id=data["conversation_id"],
        client_message_id=data["client_message_id"],
        envelopes=data["envelopes"],
    )


# Sends run on the thread pool, not the gateway's single thread-sensitive thread: concurrent
# senders then use concurrent database connections (from Django's pool) instead of queueing.
_store_concurrently = database_sync_to_async(_store_sync, thread_sensitive=False)
_send_concurrently = database_sync_to_async(_send_sync, thread_sensitive=False)


def sent_body(result: message_services.SendResult) -> dict[str, Any]:
    message = result.message
    return {
        "message_id": message.pk,
        "conversation_id": message.conversation_id,
        "client_message_id": message.client_message_id,
        "created_at": message.created_at.isoformat(),
        "duplicate": result.duplicate,
        "recipients": result.recipients,
    }


async def handle_send(stream: Stream, frame: dict[str, Any]) -> dict[str, Any]:
    """dm.send: the same service as POST /dm/conversations/{id}/messages, without a thread hop
    for the rate limit and with the publish done here, in the event loop, after the commit."""
    data = parse_send(frame, conversation_required=True)
    if stream.device_id is None:
        raise ApiError("DEVICE_REQUIRED")
    decision = await throttling.ahit_many(message_services.send_rate_windows(stream.user_id))
    if not decision.allowed:
        # Refused: the full service answers a retry of a stored message, or raises the 429.
        return {"type": "dm.sent", **sent_body(await _send_concurrently(stream, data))}
    result = await _store_concurrently(stream, data)
    for device_id, message in result.deliveries:
        await relay.apublish_to_device(device_id, message, source="dm")
    return {"type": "dm.sent", **sent_body(result)}


def _ack_sync(stream: Stream, data: dict[str, Any]) -> dict[str, Any]:
    device = _device_for_stream(stream)
    return {"type": "dm.acked", **message_services.deliveries_ack(device=device, **data)}


async def handle_ack(stream: Stream, frame: dict[str, Any]) -> dict[str, Any]:
    data = _validated(AckSerializer, frame)
    reply = await database_sync_to_async(_ack_sync)(stream, data)
    feed: DeviceFeed | None = stream.state.get(FEED)
    if feed is not None and data.get("up_to") is not None:
        feed.acknowledged(min(data["up_to"], feed.cursor))  # wakes a paused replay
    return reply


async def handle_sync(stream: Stream, frame: dict[str, Any]) -> dict[str, Any]:
    """dm.sync: replay from `since`; answered once the replay has caught up or paused at the
    unacknowledged limit (the reply's cursor is the last position sent)."""
    data = _validated(SyncSerializer, frame)
    await database_sync_to_async(_device_for_stream)(stream)
    since = data["since"]
    feed: DeviceFeed | None = stream.state.get(FEED)
    if feed is None:
        acked = await _acked_position_async(stream.device_id)
        feed = DeviceFeed(cursor=since, base=since, acked=acked, sent_pending=since, sent_flushed=since)
        stream.state[FEED] = feed
    else:
        async with feed.lock:
            feed.cursor = feed.base = since
            feed.held.clear()
    source.request_replay(stream)
    await feed.settled.wait()
    return {"type": "dm.synced", "cursor": feed.cursor}


def register() -> None:
    registry.register_source(source)
    registry.register_frame("dm.send", handle_send, feature="dm")
    registry.register_frame("dm.ack", handle_ack, feature="dm")
    registry.register_frame("dm.sync", handle_sync, feature="dm")
