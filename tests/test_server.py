"""chatsite/server.py, the one launcher, and what a client sees of the daphne it starts.

The live tests run `python -m chatsite.server` (tests/live.py) on the pytest database and Redis.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from chatsite.server import daphne_arguments
from tests.conftest import login
from tests.dm.helpers import party
from tests.factories import DEFAULT_PASSWORD, UserFactory
from tests.live import LiveServer, live_daphne

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 5
KIB = 1024


def test_daphne_runs_with_the_transport_limit_from_settings_and_without_proxy_headers(settings):
    settings.WS_MAX_MESSAGE_BYTES = 512 * KIB

    argv = daphne_arguments(bind="0.0.0.0", port=8000)

    assert argv[argv.index("--websocket-max-message-size") + 1] == str(512 * KIB)
    assert argv[argv.index("--websocket-max-frame-size") + 1] == str(512 * KIB)
    assert argv[argv.index("--verbosity") + 1] == "0"  # daphne's own (unredacted) access log off
    assert "--proxy-headers" not in argv
    assert argv[-1] == "chatsite.asgi:application"


@pytest.mark.parametrize(
    "path", ["Dockerfile", "docker-compose.yml", "scripts/run.sh", "tests/live.py", "bench/dm_throughput.py"]
)
def test_every_launch_point_runs_the_launcher(path):
    text = (ROOT / path).read_text()

    assert "chatsite.server" in text
    assert "--proxy-headers" not in text
    # No `bin/daphne ...` or ["daphne", "-b", ...]: every daphne goes through the launcher.
    assert not re.search(r"""bin/daphne|["']daphne["'],\s*["']-""", text), "daphne started directly"


# --- live -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(django_db_setup) -> Iterator[LiveServer]:
    """One daphne for the module; each test commits its rows (transactional db) for it to see."""
    with live_daphne() as running:
        yield running


def _ticket(server: LiveServer, token: str) -> str:
    status, body = server.request("POST", "/auth/stream-ticket", token=token)
    assert status == 201, body
    return body["ticket"]


@pytest.mark.live_server_process
@pytest.mark.django_db(transaction=True)
def test_a_forged_x_forwarded_for_does_not_change_the_address_the_app_sees(server):
    # Registered through the server, so the password hash is its own (tests hash with MD5).
    credentials = {"username": "forger", "password": DEFAULT_PASSWORD}
    assert server.request("POST", "/auth/register", credentials)[0] == 201
    status, body = server.request(
        "POST", "/auth/login", credentials, headers={"X-Forwarded-For": "203.0.113.77, 198.51.100.1"}
    )
    assert status == 200, body

    status, sessions = server.request("GET", "/auth/sessions", token=body["token"])

    assert status == 200
    assert [s["ip"] for s in sessions["sessions"]] == ["127.0.0.1"]


@pytest.mark.live_server_process
@pytest.mark.django_db(transaction=True)
async def test_server_output_holds_no_token_or_ticket_after_ws_and_sse_with_tickets(server):
    bob = await database_sync_to_async(party)()
    ws_ticket = await database_sync_to_async(_ticket)(server, bob.token)
    sse_ticket = await database_sync_to_async(_ticket)(server, bob.token)

    async with connect(f"{server.ws}/ws?ticket={ws_ticket}&cursor=0", open_timeout=TIMEOUT) as ws:
        hello = json.loads(await ws.recv(decode=True))
    assert hello["type"] == "hello"

    def read_sse_start() -> bytes:
        url = f"{server.http}/dm/sse?ticket={sse_ticket}"
        with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:  # noqa: S310 (a local http URL)
            assert resp.status == 200
            return resp.readline()

    assert await database_sync_to_async(read_sse_start)() == b": stream open\n"

    lines = await _access_lines(server, want=("/ws", "/dm/sse"))
    output = server.output()
    for secret in (bob.token, ws_ticket, sse_ticket):
        assert secret not in output
    assert {line["path"]: line["query"] for line in lines} == {
        "/ws": "ticket=[redacted]&cursor=0",
        "/dm/sse": "ticket=[redacted]",
    }
    assert all(line["request_id"] for line in lines)


async def _access_lines(server: LiveServer, want: tuple[str, ...]) -> list[dict]:
    """The access lines (one per path) once every path in `want` has one that finished."""
    for _ in range(50):
        lines = [json.loads(line) for line in server.output().splitlines() if line.strip()]  # all JSON
        access = [line for line in lines if line["logger"] == "chatsite.access" and line["path"] in want]
        # An HTTP line is written when the response ended; a WebSocket's last line when it closed.
        finished = {line["path"]: line for line in access if line.get("status") != 101}
        if set(finished) == set(want):
            return list(finished.values())
        await asyncio.sleep(0.1)
    raise AssertionError(f"no access lines for {want}")


@pytest.mark.live_server_process
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("size", "reply", "close_code"),
    [
        (200 * KIB, "pong", 1000),  # within WS_MAX_FRAME_BYTES: answered
        (300 * KIB, "error", 4413),  # above it, within the transport limit: PAYLOAD_TOO_LARGE
        (1536 * KIB, None, 1009),  # above WS_MAX_MESSAGE_BYTES: the transport closes "message too big"
        (5 * 1024 * KIB, None, 1009),
    ],
)
async def test_websocket_message_sizes_get_their_documented_close(server, size, reply, close_code):
    user = await database_sync_to_async(UserFactory)()
    token = await database_sync_to_async(login)(user)
    frames = []

    async with connect(
        f"{server.ws}/ws", additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=TIMEOUT
    ) as ws:
        await ws.recv()  # hello
        await ws.recv()  # heartbeat
        try:
            await ws.send(json.dumps({"type": "ping", "ref": "x" * size}))
            frames.append(json.loads(await asyncio.wait_for(ws.recv(decode=True), TIMEOUT)))
            if reply == "pong":
                await ws.close()
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
        except ConnectionClosed:
            pass

    assert [f["type"] for f in frames] == ([reply] if reply else [])
    if reply == "error":
        assert frames[0]["code"] == "PAYLOAD_TOO_LARGE"
    assert ws.close_code == close_code


@pytest.mark.live_server_process
@pytest.mark.django_db(transaction=True)
def test_the_server_says_where_it_listens_in_a_json_line(server):
    lines = [json.loads(line) for line in server.output().splitlines() if line.strip()]
    [listening] = [line for line in lines if line["logger"] == "chatsite.server"]
    assert listening["message"] == (
        f"listening on http://127.0.0.1:{server.port} (WebSocket ws://127.0.0.1:{server.port}/ws)"
    )
    assert (listening["bind"], listening["port"]) == ("127.0.0.1", server.port)


@pytest.mark.live_server_process
@pytest.mark.django_db(transaction=True)
def test_a_4xx_is_one_access_line_and_nothing_else(server):
    status, _ = server.request("GET", "/no-such-path-for-the-log")
    assert status == 404
    for _ in range(50):
        mentions = [line for line in server.output().splitlines() if "no-such-path-for-the-log" in line]
        if mentions:
            break
        time.sleep(0.1)
    time.sleep(0.3)  # anything logged after the access line would show by now
    mentions = [
        json.loads(line) for line in server.output().splitlines() if "no-such-path-for-the-log" in line
    ]
    assert [line["logger"] for line in mentions] == ["chatsite.access"]
