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


def get_probe_redis() -> redis.Redis | None:
    """A client that does NOT go through the redis breaker, for the /health probe only: it must
    really ask Redis while the breaker is open (else /health and redis_ready would say "down"
    without contacting it). The probe reports its result to the breaker itself (ops/health.py).
    Keyed by REDIS_URL, so a test's settings override takes effect."""
    if not settings.REDIS_URL:
        return None
    return _probe_client(settings.REDIS_URL)


@functools.cache
def _probe_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5, max_connections=4)


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
