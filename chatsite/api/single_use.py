"""Short-lived, single-use secrets (stream tickets, device-bind challenges), in one place.

A value is stored under a key with a time to live and can be taken once: Redis GETDEL reads and
deletes it in one command, so of two requests racing with the same secret exactly one gets it,
whatever process each reaches. Without Redis (embedded mode) a per-process dict does the same.
Callers key by a hash of the secret, never the secret itself.
"""

from __future__ import annotations

import threading
import time

import redis

from chatsite.api.errors import ApiError
from chatsite.api.redis import get_redis


class SingleUseStore:
    def __init__(self, *, unavailable_detail: str) -> None:
        self.unavailable_detail = unavailable_detail
        self._local: dict[str, tuple[str, float]] = {}  # embedded mode: key -> (value, expiry)
        self._lock = threading.Lock()

    def put(self, key: str, value: str, *, ttl_seconds: int) -> None:
        """Store `value` under `key` for `ttl_seconds`; 503 SERVICE_UNAVAILABLE if Redis fails (a
        secret only this process knew would not work where the client goes next)."""
        client = get_redis()
        if client is None:
            now = time.monotonic()
            with self._lock:
                for stale in [k for k, (_, expiry) in self._local.items() if expiry <= now]:
                    del self._local[stale]
                self._local[key] = (value, now + ttl_seconds)
            return
        try:
            client.set(key, value, ex=ttl_seconds)
        except redis.RedisError as exc:
            raise ApiError("SERVICE_UNAVAILABLE", self.unavailable_detail) from exc

    def take(self, key: str) -> str | None:
        """The value, once, if it is there and alive; None otherwise. A Redis failure is 503
        SERVICE_UNAVAILABLE."""
        client = get_redis()
        if client is None:
            with self._lock:
                value, expiry = self._local.pop(key, (None, 0.0))
            return value if expiry > time.monotonic() else None
        try:
            raw = client.getdel(key)
        except redis.RedisError as exc:
            raise ApiError("SERVICE_UNAVAILABLE", self.unavailable_detail) from exc
        return raw.decode() if raw is not None else None

    def clear_local(self) -> None:
        with self._lock:
            self._local.clear()
