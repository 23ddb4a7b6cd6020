"""Stream admission limits: which streams each user and device has open, across processes.

At most REALTIME_MAX_STREAMS_PER_USER streams per user and one per device: a new stream
for a device replaces the old one (close 4409); past the user limit the oldest is closed (4429).
The sets live in Redis (`rt:streams:u:<user>` sorted by connect time, `rt:streams:d:<device>`),
updated by one Lua script so two processes registering at once cannot both slip under the limit.
Without Redis (embedded mode, or Redis down) the same rule is kept per process.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from django.conf import settings

from chatsite.api.redis import get_async_redis
from chatsite.realtime.close_codes import CloseCode
from chatsite.realtime.relay import health

logger = logging.getLogger("chatsite.realtime")

_TTL_S = 86400

_REGISTER_LUA = """
local evicted = {}
if ARGV[5] == '1' then
  local old = redis.call('GET', KEYS[2])
  redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[4])
  if old and old ~= ARGV[1] then
    redis.call('ZREM', KEYS[1], old)
    table.insert(evicted, 'replaced|' .. old)
  end
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
local extra = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3])
if extra > 0 then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, extra - 1)
  for _, c in ipairs(oldest) do
    redis.call('ZREM', KEYS[1], c)
    table.insert(evicted, 'limit|' .. c)
  end
end
return evicted
"""

_UNREGISTER_LUA = """
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] == '1' and redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""


def _keys(user_id: int, device_id) -> list[str]:
    return [f"rt:streams:u:{user_id}", f"rt:streams:d:{device_id or '-'}"]


class _LocalStreams:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.users: dict[int, dict[str, float]] = {}
        self.devices: dict[str, str] = {}

    def register(self, user_id, device_id, channel, limit) -> list[tuple[str, int]]:
        evicted = []
        with self._lock:
            streams = self.users.setdefault(user_id, {})
            if device_id is not None:
                old = self.devices.get(str(device_id))
                self.devices[str(device_id)] = channel
                if old and old != channel:
                    streams.pop(old, None)
                    evicted.append((old, CloseCode.REPLACED))
            streams[channel] = time.time()
            for old in sorted(streams, key=streams.get)[: max(0, len(streams) - limit)]:
                streams.pop(old)
                evicted.append((old, CloseCode.RATE_LIMITED))
        return evicted

    def unregister(self, user_id, device_id, channel) -> None:
        with self._lock:
            self.users.get(user_id, {}).pop(channel, None)
            if device_id is not None and self.devices.get(str(device_id)) == channel:
                del self.devices[str(device_id)]


_local = _LocalStreams()


async def register(user_id: int, device_id, channel: str) -> list[tuple[str, int]]:
    """Record a new stream; returns the (channel, close code) pairs that must now close."""
    limit = settings.REALTIME_MAX_STREAMS_PER_USER
    if settings.REDIS_URL:
        try:
            client = get_async_redis()
            raw = await client.eval(
                _REGISTER_LUA,
                2,
                *_keys(user_id, device_id),
                channel,
                time.time(),
                limit,
                _TTL_S,
                "1" if device_id is not None else "0",
            )
            out = []
            for item in raw:
                kind, _, old = (item.decode() if isinstance(item, bytes) else item).partition("|")
                out.append((old, CloseCode.REPLACED if kind == "replaced" else CloseCode.RATE_LIMITED))
            return out
        except (redis.RedisError, OSError) as exc:
            logger.warning("stream registry falling back to per-process: %s", type(exc).__name__)
            health.mark_failed("stream_registry")
    return _local.register(user_id, device_id, channel, limit)


async def unregister(user_id: int, device_id, channel: str) -> None:
    _local.unregister(user_id, device_id, channel)
    if settings.REDIS_URL:
        try:
            await get_async_redis().eval(
                _UNREGISTER_LUA, 2, *_keys(user_id, device_id), channel, "1" if device_id is not None else "0"
            )
        except (redis.RedisError, OSError):
            health.mark_failed("stream_registry")
