"""Liveness in Redis: one key per stream, `presence:<user_id>:<conn>` (conn: the device id, or the
channel name of a stream without a device) with a TTL of 2 x PRESENCE_HEARTBEAT_S, the user's
set of conns `presence:conns:<user_id>`, and `presence:seen` (a sorted set user_id -> the epoch
of their last heartbeat) that presence.tasks.flush_last_seen writes to PostgreSQL in batches.

Every function raises redis.RedisError / OSError when Redis is down: the caller degrades to the
database (presence/streams.py). A steady heartbeat touches only these keys.
"""

from __future__ import annotations

import time

import redis
from django.conf import settings

from chatsite.api.redis import get_async_redis, get_redis

SEEN = "presence:seen"
FLUSH_GATE = "presence:flush:gate"


def conn_key(user_id: int, conn: str) -> str:
    return f"presence:{user_id}:{conn}"


def conns_key(user_id: int) -> str:
    return f"presence:conns:{user_id}"


def pushed_key(user_id: int) -> str:
    """The state last pushed to contacts ("online" / "offline"): transitions are pushed once."""
    return f"presence:pushed:{user_id}"


def store() -> str:
    """Where liveness is kept right now: "redis", or "database" when Redis is unset or does not
    answer (the degraded mode of docs/presence.md). /health reports it."""
    client = get_redis()
    if client is None:
        return "database"
    try:
        client.ping()
    except (redis.RedisError, OSError):
        return "database"
    return "redis"


def ttl_s() -> int:
    return max(2, 2 * int(settings.PRESENCE_HEARTBEAT_S))


async def abeat(user_id: int, conn: str) -> bool:
    """Mark one stream live for another 2 heartbeats (on open and on each heartbeat); False when
    its key had lapsed (or never existed)."""
    r = get_async_redis()
    if r is None:
        raise OSError("no Redis configured")
    async with r.pipeline(transaction=False) as pipe:
        pipe.set(conn_key(user_id, conn), int(time.time()), ex=ttl_s(), get=True)
        pipe.sadd(conns_key(user_id), conn)
        pipe.expire(conns_key(user_id), ttl_s() * 4)
        pipe.zadd(SEEN, {str(user_id): time.time()})
        previous, *_ = await pipe.execute()
    return previous is not None


async def aend(user_id: int, conn: str) -> bool:
    """Forget one stream; True when the user has another live stream."""
    r = get_async_redis()
    if r is None:
        raise OSError("no Redis configured")
    async with r.pipeline(transaction=False) as pipe:
        pipe.delete(conn_key(user_id, conn))
        pipe.srem(conns_key(user_id), conn)
        await pipe.execute()
    return await alive_async(user_id)


async def alive_async(user_id: int) -> bool:
    r = get_async_redis()
    if r is None:
        raise OSError("no Redis configured")
    conns = await r.smembers(conns_key(user_id))
    if not conns:
        return False
    keys = [conn_key(user_id, c.decode() if isinstance(c, bytes) else c) for c in conns]
    return bool(await r.exists(*keys))


def live_users(user_ids: list[int]) -> set[int]:
    """Which of these users have at least one unexpired stream key (sync; raises if Redis is down)."""
    r = get_redis()
    if r is None:
        raise OSError("no Redis configured")
    if not user_ids:
        return set()
    pipe = r.pipeline(transaction=False)
    for uid in user_ids:
        pipe.smembers(conns_key(uid))
    members = pipe.execute()
    pipe = r.pipeline(transaction=False)
    for uid, conns in zip(user_ids, members, strict=True):
        keys = [conn_key(uid, c.decode() if isinstance(c, bytes) else c) for c in conns]
        pipe.exists(*keys) if keys else pipe.echo("0")
    counts = pipe.execute()
    return {uid for uid, n in zip(user_ids, counts, strict=True) if int(n)}


def take_seen() -> dict[int, float] | None:
    """The users heard since the last flush and when (then cleared), or None when a flush ran
    less than PRESENCE_FLUSH_INTERVAL_S ago: at most one flush per interval, whoever calls."""
    r = get_redis()
    if r is None:
        raise OSError("no Redis configured")
    if not r.set(FLUSH_GATE, 1, nx=True, ex=max(1, int(settings.PRESENCE_FLUSH_INTERVAL_S))):
        return None
    pipe = r.pipeline(transaction=True)
    pipe.zrange(SEEN, 0, -1, withscores=True)
    pipe.delete(SEEN)
    entries, _ = pipe.execute()
    return {int(m): float(s) for m, s in entries}


def set_pushed(user_id: int, state: str) -> bool:
    """Record the state pushed to contacts; False when it was already that state (no push)."""
    r = get_redis()
    if r is None:
        raise OSError("no Redis configured")
    previous = r.getset(pushed_key(user_id), state)
    if isinstance(previous, bytes):
        previous = previous.decode()
    r.expire(pushed_key(user_id), 86400)
    return previous != state
