"""One shared Redis client per process (rate limits, counters, relay health).

Redis is optional in embedded mode: `get_redis()` returns None when REDIS_URL is unset, and every
caller has a per-process fallback. Short timeouts keep a dead Redis from stalling requests.
"""

from __future__ import annotations

import asyncio
import functools
import weakref

import redis
import redis.asyncio as aioredis
from django.conf import settings

from chatsite.api.circuit import AsyncBreakerRedis, BreakerRedis


@functools.cache
def get_redis() -> redis.Redis | None:
    if not settings.REDIS_URL:
        return None
    # Commands go through the redis circuit breaker (chatsite/api/circuit.py).
    return BreakerRedis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=0.5,
        socket_timeout=0.5,
        health_check_interval=10,
        max_connections=64,
    )


_async_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def get_async_redis() -> aioredis.Redis | None:
    """An asyncio client for the running event loop (redis.asyncio clients are loop-bound)."""
    if not settings.REDIS_URL:
        return None
    loop = asyncio.get_running_loop()
    url, client = _async_clients.get(loop, (None, None))
    if client is None or url != settings.REDIS_URL:
        client = AsyncBreakerRedis.from_url(
            settings.REDIS_URL, socket_connect_timeout=0.5, socket_timeout=0.5, max_connections=256
        )
        _async_clients[loop] = (settings.REDIS_URL, client)
    return client
