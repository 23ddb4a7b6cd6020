"""Ephemeral relay rooms on /ws: `room.create`, `room.join`, `room.leave`, `room.send`
(docs/rooms.md). State lives in Redis only (groups/rooms.py); a message is relayed through the
channel layer to the room's other connections, in any process, and stored nowhere. Ciphertext is
opaque and never logged."""

from __future__ import annotations

import contextlib
import re
import time
from typing import Any

from django.conf import settings

from chatsite.api.errors import ApiError
from chatsite.realtime import registry, relay
from chatsite.realtime.names import room_group
from chatsite.realtime.stream import Stream
from groups import rooms

SOURCE = "rooms"
_SENDER = "_sender_channel"  # on the relayed frame between processes only; stripped before sending
_CIPHERTEXT_RE = re.compile(r"^[A-Za-z0-9+/=_-]+$")  # base64 or base64url


def _member(stream: Stream) -> rooms.Member:
    return rooms.Member(stream.user_id, stream.channel_name)


def _joined(stream: Stream) -> set[str]:
    return stream.state.setdefault("rooms", set())


async def _leave_all(stream: Stream) -> None:
    """When the connection ends: leave every room it is in (the last one out deletes it)."""
    for room_id in list(_joined(stream)):
        _joined(stream).discard(room_id)
        with contextlib.suppress(ApiError):
            await rooms.room_leave(room_id, _member(stream))


async def _listen(stream: Stream, room_id: str) -> None:
    """Join the room's channel-layer group; undo the Redis membership if the layer fails."""
    try:
        await stream.join_group(room_group(room_id))
    except Exception as exc:
        with contextlib.suppress(ApiError):
            await rooms.room_leave(room_id, _member(stream))
        raise ApiError("SERVICE_UNAVAILABLE", "The relay is unavailable; retry shortly.") from exc
    _joined(stream).add(room_id)
    stream.on_cleanup(SOURCE, lambda: _leave_all(stream))


async def handle_create(stream: Stream, frame: dict[str, Any]) -> dict[str, Any]:
    room_id = await rooms.room_create(_member(stream), client_ip=stream.client_ip)
    await _listen(stream, room_id)
    return {"type": "room.created", "room_id": room_id, "members": [stream.user_id]}


async def handle_join(stream: Stream, frame: dict[str, Any]) -> dict[str, Any]:
    room_id = rooms.valid_room_id(frame.get("room_id"))
    members = await rooms.room_join(room_id, _member(stream))
    if room_id not in _joined(stream):
        await _listen(stream, room_id)
    return {"type": "room.joined", "room_id": room_id, "members": members}


async def handle_leave(stream: Stream, frame: dict[str, Any]) -> dict[str, Any]:
    room_id = rooms.valid_room_id(frame.get("room_id"))
    _joined(stream).discard(room_id)
    await stream.leave_group(room_group(room_id))
    await rooms.room_leave(room_id, _member(stream))
    return {"type": "room.left", "room_id": room_id}


def _ciphertext(frame: dict[str, Any]) -> str:
    ciphertext = frame.get("ciphertext")
    if not isinstance(ciphertext, str) or not ciphertext or not _CIPHERTEXT_RE.match(ciphertext):
        raise ApiError("VALIDATION_ERROR", errors={"ciphertext": ["A non-empty base64 string."]})
    if len(ciphertext) > settings.ROOM_MAX_MESSAGE_BYTES:  # ASCII only, so characters are bytes
        raise ApiError(
            "PAYLOAD_TOO_LARGE",
            f"ciphertext is over {settings.ROOM_MAX_MESSAGE_BYTES} bytes.",
            limit=settings.ROOM_MAX_MESSAGE_BYTES,
        )
    return ciphertext


async def handle_send(stream: Stream, frame: dict[str, Any]) -> dict[str, Any]:
    room_id = rooms.valid_room_id(frame.get("room_id"))
    ciphertext = _ciphertext(frame)
    await rooms.room_touch(room_id, _member(stream))
    message = {
        "type": "room.message",
        "room_id": room_id,
        "from_user_id": stream.user_id,
        "ciphertext": ciphertext,
        _SENDER: stream.channel_name,
    }
    event = {"type": relay.EVENT_TYPE, "frame": message, "source": SOURCE, "ts": time.time()}
    if not await relay.apublish(room_group(room_id), event):
        raise ApiError("SERVICE_UNAVAILABLE", "The relay is unavailable; the message was not sent.")
    return {"type": "room.sent", "room_id": room_id}


class RoomRelaySource(registry.StreamSource):
    """Only filters relayed room messages: the sender's own connection does not get its message
    back, and the sender's channel name never reaches a client. No groups (rooms are joined
    per connection with Stream.join_group), nothing to replay or catch up: nothing is stored."""

    name = SOURCE

    async def on_event(self, stream: Stream, frame: dict[str, Any]) -> dict[str, Any] | None:
        sender = frame.get(_SENDER)
        if sender == stream.channel_name:
            return None
        if frame.get("room_id") not in _joined(stream):
            return None  # left meanwhile (or never joined on this connection)
        return {k: v for k, v in frame.items() if k != _SENDER}


def register() -> None:
    registry.register_frame("room.create", handle_create, feature="groups")
    registry.register_frame("room.join", handle_join, feature="groups")
    registry.register_frame("room.leave", handle_leave, feature="groups")
    registry.register_frame("room.send", handle_send, feature="groups")
    registry.register_source(RoomRelaySource())
