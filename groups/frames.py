"""groups' frames on /ws: `group.send`, `group.ack` and `group.sync`, thin adapters over the same
services as REST (docs/groups.md lists each frame and its reply)."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from chatsite.api.errors import ApiError
from chatsite.realtime import registry
from chatsite.realtime.stream import Stream
from dm.selectors.devices import device_for_session
from groups import streams
from groups.presenters_messages import sent_body
from groups.selectors.members import require_member
from groups.selectors.messages import MessagePage, group_messages_page
from groups.serializers.messages import (
    GroupFrameAckSerializer,
    GroupFrameSendSerializer,
    GroupFrameSyncSerializer,
)
from groups.services import messages as message_services

# Pages a single group.sync may send before it answers (the client syncs again from the cursor).
MAX_SYNC_PAGES = 10


def _validated(serializer_class, frame: dict[str, Any]) -> dict[str, Any]:
    serializer = serializer_class(data=frame)
    if not serializer.is_valid():
        raise ApiError("VALIDATION_ERROR", errors=serializer.errors)
    return serializer.validated_data


def _send(stream: Stream, data: dict[str, Any]) -> dict[str, Any]:
    device = device_for_session(stream.device_id)
    group_id = data.pop("group_id")
    require_member(group_id=group_id, user_id=stream.user_id)
    result = message_services.group_message_send(
        group_id=group_id, sender_user_id=stream.user_id, sender_device_id=device.pk, **data
    )
    return sent_body(result.message, duplicate=result.duplicate, recipients=result.recipients)


# On the thread pool (as dm.send): concurrent senders use concurrent database connections.
_send_async = database_sync_to_async(_send, thread_sensitive=False)


async def handle_send(stream: Stream, frame: dict[str, Any]) -> dict[str, Any]:
    """group.send: `group_message_send`, exactly as POST /groups/{id}/messages calls it."""
    data = dict(_validated(GroupFrameSendSerializer, frame))
    body = await _send_async(stream, data)
    streams.source.note_sent(stream, body["group_id"], body["seq"])
    return {"type": "group.sent", **body}


def _ack(stream: Stream, data: dict[str, Any]) -> dict[str, Any]:
    device = device_for_session(stream.device_id)
    require_member(group_id=data["group_id"], user_id=stream.user_id)
    return message_services.group_ack(group_id=data["group_id"], device_id=device.pk, up_to_seq=data["seq"])


async def handle_ack(stream: Stream, frame: dict[str, Any]) -> dict[str, Any]:
    data = _validated(GroupFrameAckSerializer, frame)
    return {"type": "group.acked", **await database_sync_to_async(_ack)(stream, data)}


def _page(stream: Stream, group_id, since: int) -> MessagePage:
    device = device_for_session(stream.device_id)
    member = require_member(group_id=group_id, user_id=stream.user_id)
    return group_messages_page(
        group_id=group_id,
        device_id=device.pk,
        joined_seq=member.joined_seq,
        since=since,
        limit=settings.GROUP_FETCH_PAGE_SIZE,
    )


_page_async = database_sync_to_async(_page, thread_sensitive=False)


async def handle_sync(stream: Stream, frame: dict[str, Any]) -> dict[str, Any]:
    """group.sync: every readable message after `since` as `group.message` frames, then
    `group.synced` with the cursor reached (`has_more`: sync again from it). The stream's own
    feed (groups/streams.py) then goes on after that cursor; a replay already under way may still
    send a seq twice, and a client drops a seq it already has."""
    data = _validated(GroupFrameSyncSerializer, frame)
    cursor = data["since"]
    has_more = False
    for _ in range(MAX_SYNC_PAGES):
        page = await _page_async(stream, data["group_id"], cursor)
        for item in page.frames:
            await stream.send(item)
        cursor, has_more = page.cursor, page.has_more
        streams.source.note_synced(stream, data["group_id"], cursor)
        if not has_more:
            break
    return {"type": "group.synced", "group_id": str(data["group_id"]), "cursor": cursor, "has_more": has_more}


def register() -> None:
    registry.register_frame("group.send", handle_send, feature="groups")
    registry.register_frame("group.ack", handle_ack, feature="groups")
    registry.register_frame("group.sync", handle_sync, feature="groups")
