"""A throwaway redis-server the test can really stop and start, and a context that points the
channel layer, rate limiter and relay health at it (fault injection without mocks)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time

import redis
from channels.layers import channel_layers
from django.test import override_settings

from chatsite.api.circuit import breaker
from chatsite.api.redis import _async_clients, get_redis
from chatsite.realtime.relay import health
from tests.live import free_port


class RedisProcess:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url, socket_connect_timeout=0.2).ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


def _reset_clients() -> None:
    breaker("redis").reset()
    channel_layers.backends.clear()
    get_redis.cache_clear()
    health.ok = True
    health.checked_at = 0.0
    _async_clients.clear()


@contextlib.contextmanager
def relay_on(server: RedisProcess, **settings_overrides):
    """Point every Redis user of this process at `server` for the duration."""
    layers = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": server.url, "socket_connect_timeout": 0.5}],
                "capacity": 1500,
                "expiry": 30,
            },
        }
    }
    # A Redis brought back is used again within a fraction of a second: the redis circuit breaker
    # (chatsite/api/circuit.py) would otherwise wait its production minute before a trial call.
    settings_overrides.setdefault("CIRCUIT_BREAKER_RESET_S", 0.2)
    with override_settings(REDIS_URL=server.url, CHANNEL_LAYERS=layers, **settings_overrides):
        _reset_clients()
        try:
            yield
        finally:
            _reset_clients()
