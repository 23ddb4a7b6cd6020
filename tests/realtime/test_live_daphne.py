"""End to end over real sockets: a daphne process serving chatsite.asgi, a real WebSocket client.

The daphne process uses the pytest test database (committed rows: transactional db) and the same
Redis, so the user and session created here are the ones it authenticates.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection
from websockets.asyncio.client import connect

from tests.conftest import login
from tests.factories import UserFactory

pytestmark = [pytest.mark.live_server_process, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
DAPHNE = ROOT / ".venv" / "bin" / "daphne"
STARTUP_TIMEOUT_S = 15  # importing Django and every app in a fresh interpreter
TIMEOUT = 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def daphne_database_url() -> str:
    """DATABASE_URL with the database name swapped for pytest's test database."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


def http_get(url: str, timeout: float = TIMEOUT) -> tuple[int, dict]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (a local http URL)
        return resp.status, json.loads(resp.read())


@pytest.fixture(scope="module")
def daphne_server(django_db_setup) -> Iterator[str]:
    """One daphne for the module; each test commits its rows (transactional db) for it to see."""
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "chatsite.settings",
        "DATABASE_URL": daphne_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "SECURE_SSL_REDIRECT": "false",  # plain HTTP, as behind the TLS-terminating balancer
        "DB_POOL_MIN_SIZE": "1",
        "DB_POOL_MAX_SIZE": "4",
    }
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [str(DAPHNE), "-b", "127.0.0.1", "-p", str(port), "chatsite.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(
                    f"daphne exited with {proc.returncode}:\n{log.read().decode(errors='replace')[-3000:]}"
                )
            try:
                if http_get(f"{base}/live", timeout=0.5)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"daphne did not answer /live:\n{log.read().decode(errors='replace')[-3000:]}")
            time.sleep(0.1)
        yield base
    finally:
        # Always stopped, and before the test database is dropped.
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


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
