"""End to end over real sockets: a daphne process serving chatsite.asgi, a real WebSocket client.

The daphne process uses the pytest test database (committed rows: transactional db) and the same
Redis, so the user and session created here are the ones it authenticates.
"""

from __future__ import annotations

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
