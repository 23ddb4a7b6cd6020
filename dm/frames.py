"""dm's frames on /ws: `dm.send`, `dm.ack` and `dm.sync`, thin adapters over the same services as
REST (docs/dm.md lists each frame and its reply)."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from chatsite.api.errors import ApiError
from chatsite.realtime import registry
from chatsite.realtime.stream import Stream
from dm import presenters
from dm.selectors.devices import acked_position, device_for_session
from dm.serializers.messages import AckSerializer, SyncSerializer, parse_send
from dm.services import messages as message_services
from dm.streams import FEED, DeviceFeed, new_feed, source


def _validated(serializer_class, frame: dict[str, Any]) -> dict[str, Any]:
    serializer = serializer_class(data=frame)
    if not serializer.is_valid():
        raise ApiError("VALIDATION_ERROR", errors=serializer.errors)
    return serializer.validated_data


# On the thread pool, not the gateway's single thread-sensitive thread: concurrent senders then
# use concurrent database connections (from Django's pool) instead of queueing for one thread.
_message_send = database_sync_to_async(message_services.message_send, thread_sensitive=False)


async def handle_send(stream: Stream, frame: dict[str, Any]) -> dict[str, Any]:
    """dm.send: `message_send`, exactly as POST /dm/conversations/{id}/messages calls it."""
    data = parse_send(frame, conversation_required=True)
    if stream.device_id is None:
        raise ApiError("DEVICE_REQUIRED")
    result = await _message_send(
        sender_id=stream.user_id,
        sender_device_id=stream.device_id,
        conversation_id=data["conversation_id"],
        client_message_id=data["client_message_id"],
        envelopes=data["envelopes"],
    )
    return {"type": "dm.sent", **presenters.sent_body(result)}


def _ack(stream: Stream, data: dict[str, Any]) -> dict[str, Any]:
    device = device_for_session(stream.device_id)
    return message_services.deliveries_ack(device=device, **data)


async def handle_ack(stream: Stream, frame: dict[str, Any]) -> dict[str, Any]:
    data = _validated(AckSerializer, frame)
    reply = await database_sync_to_async(_ack)(stream, data)
    feed: DeviceFeed | None = stream.state.get(FEED)
    if feed is not None and data.get("up_to") is not None:
        feed.acknowledged(min(data["up_to"], feed.cursor))  # wakes a paused replay
    return {"type": "dm.acked", **reply}


async def handle_sync(stream: Stream, frame: dict[str, Any]) -> dict[str, Any]:
    """dm.sync: replay from `since`; answered once the replay has caught up or paused at the
    unacknowledged limit (the reply's cursor is the last position sent)."""
    data = _validated(SyncSerializer, frame)
    await database_sync_to_async(device_for_session)(stream.device_id)
    since = data["since"]
    feed: DeviceFeed | None = stream.state.get(FEED)
    if feed is None:
        feed = new_feed(
            stream, cursor=since, acked=await database_sync_to_async(acked_position)(stream.device_id)
        )
    else:
        async with feed.lock:
            feed.restart_at(since)
    source.request_replay(stream)
    await feed.settled.wait()
    return {"type": "dm.synced", "cursor": feed.cursor}


def register() -> None:
    registry.register_frame("dm.send", handle_send, feature="dm")
    registry.register_frame("dm.ack", handle_ack, feature="dm")
    registry.register_frame("dm.sync", handle_sync, feature="dm")
