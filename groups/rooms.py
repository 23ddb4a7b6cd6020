"""Ephemeral relay rooms: state in Redis only, never in the database (docs/rooms.md).

A room is two Redis keys, both with the idle TTL `ROOM_IDLE_TTL_S`, refreshed by every create,
join, leave and send:

- `room:<id>`          hash: `created_at` (unix seconds), `creator` (user id)
- `room:<id>:members`  hash: member connection (channel-layer channel name) -> user id

Each use case is one Lua script, so the member cap (`ROOM_MAX_MEMBERS`) and "the last leave
deletes the room" hold across processes. Messages are never written anywhere: groups/room_frames.py
relays them through the channel layer. A Redis failure is a SERVICE_UNAVAILABLE ApiError.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import NamedTuple

import redis
from asgiref.sync import sync_to_async
from django.conf import settings

from chatsite.api import throttling
from chatsite.api.errors import ApiError
from chatsite.api.redis import get_async_redis

ROOM_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")

_UNAVAILABLE = "Rooms are unavailable (their state lives in Redis); retry shortly."

# KEYS: meta, members. ARGV: created_at, creator user id, creator channel, ttl.
_CREATE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'created_at', ARGV[1], 'creator', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""

# KEYS: meta, members. ARGV: channel, user id, ttl, max members.
# Returns {status, user ids...}: status -1 no such room, -2 full, else the member count.
_JOIN_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
  if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[4]) then return {-2} end
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
local result = {redis.call('HLEN', KEYS[2])}
for _, user in ipairs(redis.call('HVALS', KEYS[2])) do table.insert(result, user) end
return result
"""

# KEYS: meta, members. ARGV: channel, ttl. Returns -1 when not a member, else the members left
# (0: the room and both its keys are gone).
_LEAVE_LUA = """
if redis.call('HDEL', KEYS[2], ARGV[1]) == 0 then return -1 end
local left = redis.call('HLEN', KEYS[2])
if left == 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 0
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return left
"""

# KEYS: meta, members. ARGV: channel, ttl. 1 (and the TTLs refreshed) when a member, else 0.
_TOUCH_LUA = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"""


class Member(NamedTuple):
    """One connection in a room: its user and its channel-layer channel."""

    user_id: int
    channel: str


def meta_key(room_id: str) -> str:
    return f"room:{room_id}"


def members_key(room_id: str) -> str:
    return f"room:{room_id}:members"


def _keys(room_id: str) -> list[str]:
    return [meta_key(room_id), members_key(room_id)]


def valid_room_id(room_id: object) -> str:
    if not isinstance(room_id, str) or not ROOM_ID_RE.match(room_id):
        raise ApiError("VALIDATION_ERROR", errors={"room_id": ["Not a room id."]})
    return room_id


def _client():
    client = get_async_redis()
    if client is None:
        raise ApiError("SERVICE_UNAVAILABLE", "Rooms need Redis (REDIS_URL is not set).")
    return client


async def _run(script: str, keys: list[str], args: list) -> object:
    client = _client()
    try:
        return await client.register_script(script)(keys=keys, args=args)
    except (redis.RedisError, OSError, TimeoutError) as exc:
        from chatsite.metrics import REDIS_ERRORS

        REDIS_ERRORS.labels(component="rooms").inc()
        raise ApiError("SERVICE_UNAVAILABLE", _UNAVAILABLE) from exc


def _user_ids(raw: list) -> list[int]:
    return sorted({int(v) for v in raw})


def _check_create_rate(client_ip: str | None, user_id: int) -> None:
    key = client_ip or f"user-{user_id}"  # a transport that knows no address: per user instead
    throttling.check(
        "room_create",
        key,
        limit=settings.MAX_ROOM_CREATES_PER_IP_PER_MIN,
        window_seconds=60,
        detail="Too many rooms created from this address; wait a minute.",
    )


async def room_create(creator: Member, *, client_ip: str | None) -> str:
    """A new room with `creator` as its first member; RATE_LIMITED past
    MAX_ROOM_CREATES_PER_IP_PER_MIN per client address."""
    await sync_to_async(_check_create_rate, thread_sensitive=False)(client_ip, creator.user_id)
    for _ in range(3):
        room_id = secrets.token_urlsafe(18)
        args = [int(time.time()), creator.user_id, creator.channel, settings.ROOM_IDLE_TTL_S]
        if await _run(_CREATE_LUA, _keys(room_id), args):
            return room_id
    raise ApiError("INTERNAL_ERROR")  # three 144-bit collisions: something else is wrong


async def room_join(room_id: str, member: Member) -> list[int]:
    """Add a connection to a room (again: a no-op); the members' user ids after it.
    NOT_FOUND for an unknown (or expired) room, GROUP_FULL at ROOM_MAX_MEMBERS connections."""
    args = [member.channel, member.user_id, settings.ROOM_IDLE_TTL_S, settings.ROOM_MAX_MEMBERS]
    status, *users = await _run(_JOIN_LUA, _keys(room_id), args)
    if status == -1:
        raise ApiError("NOT_FOUND", "No such room (it may have emptied or idled out).")
    if status == -2:
        raise ApiError("GROUP_FULL", "The room is at its member limit.", limit=settings.ROOM_MAX_MEMBERS)
    return _user_ids(users)


async def room_leave(room_id: str, member: Member) -> int:
    """Remove a connection from a room; the members left (0: the room is deleted).
    NOT_MEMBER when the connection was not in it."""
    left = await _run(_LEAVE_LUA, _keys(room_id), [member.channel, settings.ROOM_IDLE_TTL_S])
    if left == -1:
        raise ApiError("NOT_MEMBER", "You are not in this room.")
    return int(left)


async def room_touch(room_id: str, member: Member) -> None:
    """Check that the connection is in the room and refresh the room's TTL (before a send);
    NOT_MEMBER otherwise."""
    if not await _run(_TOUCH_LUA, _keys(room_id), [member.channel, settings.ROOM_IDLE_TTL_S]):
        raise ApiError("NOT_MEMBER", "You are not in this room.")


async def room_members(room_id: str) -> list[int]:
    """The user ids of a room's members (empty for an unknown room)."""
    client = _client()
    try:
        raw = await client.hvals(members_key(room_id))
    except (redis.RedisError, OSError, TimeoutError) as exc:
        raise ApiError("SERVICE_UNAVAILABLE", _UNAVAILABLE) from exc
    return _user_ids(raw)
