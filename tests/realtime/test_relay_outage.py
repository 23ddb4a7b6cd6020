"""A real relay outage: the channel layer's Redis dies under a connected socket and comes back.

The test starts its own throwaway redis-server (so killing it touches nobody else), points the
process at it, kills it, and restarts it on the same port. Nothing is mocked.
"""

from __future__ import annotations

import copy
import shutil
import socket
import subprocess
import time

import pytest
import redis
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from django.db import transaction

from chatsite.api.redis import get_redis
from chatsite.asgi import application
from chatsite.metrics import REDIS_READY
from chatsite.realtime import relay
from tests.conftest import login
from tests.factories import UserFactory
from tests.realtime.helpers import Communicator

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server on PATH"),
]

TIMEOUT = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThrowawayRedis:
    """A redis-server this test owns: started, killed and restarted on one port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no"]  # nothing on disk
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 5
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


def reset_relay_health() -> None:
    relay.health.ok = True
    relay.health.checked_at = 0.0


@pytest.fixture
def throwaway_redis(settings):
    server = ThrowawayRedis()
    server.start()
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    layers["default"] = {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            **layers["default"].get("CONFIG", {}),
            "hosts": [{"address": server.url, "socket_connect_timeout": 0.5}],
        },
    }
    get_redis.cache_clear()
    settings.REDIS_URL = server.url
    settings.CHANNEL_LAYERS = layers  # setting_changed drops channels' cached layer
    channel_layers.backends = {}
    reset_relay_health()
    yield server
    server.kill()
    get_redis.cache_clear()
    channel_layers.backends = {}
    reset_relay_health()


async def next_heartbeat(comm: Communicator) -> dict:
    frame = await comm.receive_json_from(timeout=TIMEOUT)
    assert frame["type"] == "heartbeat", frame
    return frame


async def heartbeat_with(comm: Communicator, *, relay_lag: bool) -> dict:
    """The first heartbeat saying `relay_lag`; only heartbeats may come before it."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        frame = await next_heartbeat(comm)
        if frame["relay_lag"] is relay_lag:
            return frame
    raise AssertionError(f"no heartbeat with relay_lag={relay_lag} within {TIMEOUT}s")


def redis_ready() -> float:
    return REDIS_READY.collect()[0].samples[0].value


def publish_committed(user_id: int, frame: dict) -> None:
    with transaction.atomic():
        relay.publish_to_user(user_id, frame)


async def test_relay_outage_is_reported_in_heartbeats_and_recovers(throwaway_redis, settings):
    settings.WS_PING_INTERVAL_MS = 500
    settings.RELAY_HEALTH_CHECK_INTERVAL_MS = 100
    settings.RELAY_POLL_INTERVAL_MS = 500
    user = await database_sync_to_async(UserFactory)()
    token = await database_sync_to_async(login)(user)
    comm = Communicator(application, "/ws", headers=[(b"authorization", f"Bearer {token}".encode())])
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected
    assert (await comm.receive_json_from(timeout=TIMEOUT))["type"] == "hello"
    assert (await next_heartbeat(comm))["relay_lag"] is False
    assert await sync_to_async(relay.redis_status)() == "available"

    # --- Redis dies ---
    throwaway_redis.kill()

    await heartbeat_with(comm, relay_lag=True)
    assert (await next_heartbeat(comm))["relay_lag"] is True  # and stays so while it is down
    assert await sync_to_async(relay.redis_status)() == "unavailable"
    assert redis_ready() == 0
    # The socket itself is fine: the gateway answers without Redis.
    await comm.send_json_to({"type": "ping", "ref": "during"})
    frame = await comm.receive_json_from(timeout=TIMEOUT)
    while frame["type"] == "heartbeat":
        frame = await comm.receive_json_from(timeout=TIMEOUT)
    assert frame == {"type": "pong", "ref": "during"}

    # --- Redis is back (empty: group memberships and queued messages are gone) ---
    throwaway_redis.start()

    await heartbeat_with(comm, relay_lag=False)
    assert await sync_to_async(relay.redis_status)() == "available"
    assert redis_ready() == 1
    await database_sync_to_async(publish_committed, thread_sensitive=False)(
        user.pk, {"type": "test.after_recovery"}
    )
    frame = await comm.receive_json_from(timeout=TIMEOUT)
    while frame["type"] == "heartbeat":
        frame = await comm.receive_json_from(timeout=TIMEOUT)
    assert frame == {"type": "test.after_recovery"}
    await comm.disconnect()


async def test_publish_during_outage_does_not_raise(throwaway_redis):
    user = await database_sync_to_async(UserFactory)()
    throwaway_redis.kill()

    # Store-then-publish: the write commits; the lost publish is counted, not raised.
    await database_sync_to_async(publish_committed, thread_sensitive=False)(user.pk, {"type": "test.lost"})

    assert relay.health.ok is False


async def test_socket_opened_during_outage_is_accepted_with_relay_lag(throwaway_redis):
    user = await database_sync_to_async(UserFactory)()
    token = await database_sync_to_async(login)(user)
    throwaway_redis.kill()
    comm = Communicator(application, "/ws", headers=[(b"authorization", f"Bearer {token}".encode())])

    connected, _ = await comm.connect(timeout=TIMEOUT)

    assert connected
    assert (await comm.receive_json_from(timeout=TIMEOUT))["type"] == "hello"
    assert (await next_heartbeat(comm))["relay_lag"] is True
    await comm.send_json_to({"type": "ping"})
    assert await comm.receive_json_from(timeout=TIMEOUT) == {"type": "pong"}
    await comm.disconnect()
