"""Sliding-window rate limiting shared by every process through Redis.

Each limit is a sorted set `rl:<scope>:<key>` of event timestamps (a sliding log). One Lua script
trims, counts and records atomically across processes, for one window or several at once (e.g.
per minute and per hour: either all have room and the event is recorded in all, or none is
touched). If Redis is down the limiter degrades to a per-process sliding log instead of failing
the request, and counts the fallback in `redis_errors{component="ratelimit"}`.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from dataclasses import dataclass

import redis

from chatsite.api.errors import rate_limited
from chatsite.api.redis import get_redis

logger = logging.getLogger("chatsite.ratelimit")

# KEYS: one sorted set per window. ARGV: now, member, cost, then (window seconds, limit) per key.
_SLIDING_WINDOW_LUA = """
local now = tonumber(ARGV[1])
local member = ARGV[2]
local cost = tonumber(ARGV[3])
local blocked = false
local retry = 0
local first_count = 0
for i, key in ipairs(KEYS) do
  local window = tonumber(ARGV[2 + 2 * i])
  local limit = tonumber(ARGV[3 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local count = redis.call('ZCARD', key)
  if i == 1 then first_count = count end
  if count + cost > limit then
    blocked = true
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local wait = window
    if oldest[2] then wait = tonumber(oldest[2]) + window - now end
    if wait > retry then retry = wait end
  end
end
if blocked then return {0, first_count, tostring(retry)} end
for i, key in ipairs(KEYS) do
  for c = 1, cost do redis.call('ZADD', key, now, member .. ':' .. c) end
  redis.call('PEXPIRE', key, math.ceil(tonumber(ARGV[2 + 2 * i]) * 1000))
end
return {1, first_count + cost, '0'}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    count: int
    retry_in_seconds: float


@dataclass(frozen=True)
class Window:
    """One limit: at most `limit` events per `seconds` for `key` within `scope`."""

    scope: str
    key: str | int
    limit: int
    seconds: float

    @property
    def redis_key(self) -> str:
        return f"rl:{self.scope}:{self.key}"


class _LocalWindows:
    """Per-process fallback: the same sliding logs in memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)

    def _trimmed(self, key: str, window: float, now: float) -> collections.deque[float]:
        log = self._logs[key]
        while log and log[0] <= now - window:
            log.popleft()
        return log

    def hit(self, windows: list[Window], now: float, cost: int) -> Decision:
        with self._lock:
            logs = [self._trimmed(w.redis_key, w.seconds, now) for w in windows]
            waits = [
                log[0] + w.seconds - now if log else w.seconds
                for w, log in zip(windows, logs, strict=True)
                if len(log) + cost > w.limit
            ]
            if waits:
                return Decision(False, len(logs[0]), max(waits))
            for log in logs:
                log.extend([now] * cost)
            return Decision(True, len(logs[0]), 0.0)

    def peek(self, window: Window, now: float) -> Decision:
        with self._lock:
            log = self._trimmed(window.redis_key, window.seconds, now)
            return Decision(not log, len(log), log[0] + window.seconds - now if log else 0.0)

    def reset(self, key: str) -> None:
        with self._lock:
            self._logs.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._logs.clear()


_local = _LocalWindows()
_scripts: dict[int, object] = {}

# The time, in seconds, that `hit_many` and `peek` score events with, in Redis (the script is given
# `now`; it never reads Redis's clock) and in the fallback alike. A module attribute, so a test can
# move it by hand (monkeypatch.setattr(throttling, "clock", ...)) instead of sleeping.
clock = time.time


def _fell_back(exc: Exception) -> None:
    from chatsite.metrics import REDIS_ERRORS

    REDIS_ERRORS.labels(component="ratelimit").inc()
    logger.warning("rate limiter falling back to per-process windows: %s", type(exc).__name__)


def _args(windows: list[Window], now: float, cost: int) -> tuple[list[str], list]:
    args: list = [now, uuid.uuid4().hex, cost]
    for w in windows:
        args += [w.seconds, w.limit]
    return [w.redis_key for w in windows], args


def hit_many(windows: list[Window], *, cost: int = 1) -> Decision:
    """Count one event against every window at once; allowed only if all have room."""
    now = clock()
    client = get_redis()
    if client is not None:
        try:
            script = _scripts.get(id(client))
            if script is None:
                script = _scripts[id(client)] = client.register_script(_SLIDING_WINDOW_LUA)
            keys, args = _args(windows, now, cost)
            allowed, count, retry = script(keys=keys, args=args)
            return Decision(bool(allowed), int(count), float(retry))
        except (redis.RedisError, OSError) as exc:
            _fell_back(exc)
    return _local.hit(windows, now, cost)


def hit(scope: str, key: str | int, *, limit: int, window_seconds: float, cost: int = 1) -> Decision:
    """Count one event against `limit` per `window_seconds`; says whether it was allowed."""
    return hit_many([Window(scope, key, limit, window_seconds)], cost=cost)


def refuse(decision: Decision, windows: list[Window], detail: str | None = None) -> None:
    """Raise the 429 for a refused decision (and count it)."""
    from chatsite.metrics import RATE_LIMIT_HITS

    RATE_LIMIT_HITS.labels(scope=windows[0].scope).inc()
    raise rate_limited(decision.retry_in_seconds, detail)


def check_many(windows: list[Window], *, detail: str | None = None) -> None:
    """Like `hit_many`, but raises RATE_LIMITED (429, X-Retry-After, retry_in_seconds) when over."""
    decision = hit_many(windows)
    if not decision.allowed:
        refuse(decision, windows, detail)


def check(
    scope: str, key: str | int, *, limit: int, window_seconds: float, detail: str | None = None
) -> None:
    """One window; raises RATE_LIMITED when over."""
    check_many([Window(scope, key, limit, window_seconds)], detail=detail)


def peek(scope: str, key: str | int, *, window_seconds: float) -> Decision:
    """What the window holds now, without counting an event (`allowed` means it is empty)."""
    window = Window(scope, key, 0, window_seconds)
    now = clock()
    client = get_redis()
    if client is not None:
        try:
            pipe = client.pipeline()
            pipe.zremrangebyscore(window.redis_key, "-inf", now - window_seconds)
            pipe.zrange(window.redis_key, 0, 0, withscores=True)
            pipe.zcard(window.redis_key)
            _, oldest, count = pipe.execute()
            retry = oldest[0][1] + window_seconds - now if oldest else 0.0
            return Decision(count == 0, int(count), retry)
        except (redis.RedisError, OSError) as exc:
            _fell_back(exc)
    return _local.peek(window, now)


def reset(scope: str, key: str | int) -> None:
    rkey = Window(scope, key, 0, 0).redis_key
    client = get_redis()
    if client is not None:
        try:
            client.delete(rkey)
        except (redis.RedisError, OSError) as exc:
            _fell_back(exc)
    _local.reset(rkey)


def reset_local() -> None:
    """Tests: forget the per-process fallback windows."""
    _local.clear()


# --- Operators: reset one user's windows, flush them all (seed 002, "Flush rate limit counters") --
#
# Only `rl:*` keys are ever touched: found with SCAN MATCH (never KEYS, which blocks Redis) and
# removed with UNLINK (freed in the background) in batches of RATE_LIMIT_FLUSH_BATCH; never
# FLUSHDB, which would drop stream registries, presence and every other process's state.

KEY_PREFIX = "rl:"


def _key_of_user(rkey: str, user_id: int) -> bool:
    """Whether the window `rl:<scope>:<key>` counts `user_id`'s events. Scopes have no colon;
    a user's key is their id (`rl:dm_send_min:42`), or starts with `u:<id>:` (a pair such as
    `rl:bundle_fetch:u:42:<device>`) or is `user-<id>` (a per-address scope that fell back to
    the user: `rl:room_create:user-42`). Those are every scope's shapes; none is `<id>:…`, which
    an IPv6 address key would match (`rl:register:2001:db8::1` is not user 2001's), so addresses
    never match: `1.2.3.42`, `::42` and `2001:db8::1` are no user's."""
    parts = rkey.split(":", 2)
    if len(parts) != 3 or parts[0] != "rl":
        return False
    key, uid = parts[2], str(user_id)
    return key == uid or key == f"user-{uid}" or key.startswith(f"u:{uid}:")


def _scan(client, match: str):
    from django.conf import settings

    for k in client.scan_iter(match=match, count=settings.RATE_LIMIT_FLUSH_BATCH):
        yield k.decode() if isinstance(k, bytes) else k


def _require_redis():
    client = get_redis()
    if client is None:
        raise RuntimeError("REDIS_URL is not set: rate-limit windows live in this process only")
    return client


def _scope(rkey: str) -> str:
    return rkey.split(":", 2)[1] if rkey.count(":") >= 2 else "?"


def user_window_keys(user_id: int) -> list[str]:
    """The `rl:*` keys of one user's windows (see _key_of_user), sorted."""
    return sorted(k for k in _scan(_require_redis(), f"{KEY_PREFIX}*") if _key_of_user(k, user_id))


def window_counts() -> dict[str, int]:
    """How many `rl:*` windows each scope holds now: what a flush would remove."""
    counts: dict[str, int] = collections.Counter(_scope(k) for k in _scan(_require_redis(), f"{KEY_PREFIX}*"))
    return dict(sorted(counts.items()))


def reset_user(user_id: int) -> list[str]:
    """Remove every window of `user_id` (all scopes): their next requests start from zero.
    Returns the keys removed. This process's fallback windows of the user go too; other
    processes' fallbacks (used only while Redis is down) are theirs to forget."""
    client = _require_redis()
    keys = user_window_keys(user_id)
    if keys:
        client.unlink(*keys)
    with _local._lock:
        for key in [k for k in _local._logs if _key_of_user(k, user_id)]:
            del _local._logs[key]
    return keys


def flush_all() -> dict[str, int]:
    """Remove every rate-limit window, `rl:*` keys only, UNLINKed as SCAN finds them in batches
    of RATE_LIMIT_FLUSH_BATCH (memory stays bounded however many there are). Returns how many
    were removed per scope."""
    from django.conf import settings

    client = _require_redis()
    removed: collections.Counter[str] = collections.Counter()
    batch: list[str] = []
    for key in _scan(client, f"{KEY_PREFIX}*"):
        batch.append(key)
        if len(batch) >= settings.RATE_LIMIT_FLUSH_BATCH:
            client.unlink(*batch)
            removed.update(_scope(k) for k in batch)
            batch = []
    if batch:
        client.unlink(*batch)
        removed.update(_scope(k) for k in batch)
    _local.clear()
    return dict(sorted(removed.items()))
