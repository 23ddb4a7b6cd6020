"""End to end over real sockets: a daphne process serving chatsite.asgi, a real WebSocket client.

The daphne process uses the pytest test database (committed rows: transactional db) and the same
Redis, so the user and session created here are the ones it authenticates.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator

import pytest
from channels.db import database_sync_to_async
from websockets.asyncio.client import connect

from tests.conftest import login
from tests.factories import UserFactory
from tests.live import live_daphne

pytestmark = [pytest.mark.live_server_process, pytest.mark.django_db(transaction=True)]

TIMEOUT = 5


def http_get(url: str, timeout: float = TIMEOUT) -> tuple[int, dict]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (a local http URL)
        return resp.status, json.loads(resp.read())


@pytest.fixture(scope="module")
def daphne_server(django_db_setup) -> Iterator[str]:
    """One daphne for the module; each test commits its rows (transactional db) for it to see."""
    with live_daphne() as server:
        yield server.http


async def test_real_websocket_client_gets_hello_heartbeat_and_pong(daphne_server):
    user = await database_sync_to_async(UserFactory)()
    token = await database_sync_to_async(login)(user)
    ws_url = daphne_server.replace("http://", "ws://") + "/ws"

    async with connect(
        ws_url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=TIMEOUT
    ) as ws:
        hello = json.loads(await ws.recv(decode=True))
        heartbeat = json.loads(await ws.recv(decode=True))
        await ws.send(json.dumps({"type": "ping", "ref": "live-1"}))
        pong = json.loads(await ws.recv(decode=True))

    assert hello["type"] == "hello"
    assert hello["user_id"] == user.pk
    assert heartbeat["type"] == "heartbeat"
    assert heartbeat["relay_lag"] is False
    assert pong == {"type": "pong", "ref": "live-1"}


async def test_real_websocket_without_token_is_closed_with_4401(daphne_server):
    ws_url = daphne_server.replace("http://", "ws://") + "/ws"

    async with connect(ws_url, open_timeout=TIMEOUT) as ws:
        closing = json.loads(await ws.recv(decode=True))
        await ws.wait_closed()

    assert closing["type"] == "closing"
    assert ws.close_code == 4401


async def test_health_over_real_http_is_json(daphne_server):
    status, body = await database_sync_to_async(http_get)(f"{daphne_server}/health")

    assert status == 200
    assert body["status"] in ("ok", "degraded")
    assert "database" in body["checks"]


@pytest.fixture(scope="module")
def quick_ping_daphne(django_db_setup) -> Iterator[str]:
    """daphne pinging every second and an idle timeout of 2 s (WS_PING_INTERVAL_MS + TIMEOUT_MS)."""
    with live_daphne({"WS_PING_INTERVAL_MS": "1000", "WS_PING_TIMEOUT_MS": "1000"}) as server:
        yield server.http


async def test_a_client_that_only_listens_and_answers_protocol_pings_is_not_timed_out(quick_ping_daphne):
    user = await database_sync_to_async(UserFactory)()
    token = await database_sync_to_async(login)(user)
    ws_url = quick_ping_daphne.replace("http://", "ws://") + "/ws"

    # websockets answers the server's pings itself and sends none of its own (ping_interval=None),
    # as a listen-only client library does; the test sends no frame for twice the idle timeout.
    async with connect(
        ws_url,
        additional_headers={"Authorization": f"Bearer {token}"},
        open_timeout=TIMEOUT,
        ping_interval=None,
    ) as ws:
        hello = json.loads(await ws.recv(decode=True))
        frames = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 4.5
        while (left := deadline - loop.time()) > 0:
            try:
                frames.append(json.loads(await asyncio.wait_for(ws.recv(decode=True), left)))
            except TimeoutError:
                break
        assert ws.close_code is None  # still open
        await ws.send(json.dumps({"type": "ping", "ref": "still-here"}))
        pong = json.loads(await ws.recv(decode=True))

    assert hello["keepalive"]["idle_timeout_ms"] == 2000
    assert [f for f in frames if f["type"] == "closing"] == []
    assert pong == {"type": "pong", "ref": "still-here"}
