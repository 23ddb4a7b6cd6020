"""Clients for the realtime gateway in tests: WebSocket (channels' communicator, every one recorded
so the autouse fixture in tests/conftest.py can disconnect what a test left open) and an in-process
SSE reader that drives the ASGI app directly, plus the helpers that read their frames."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import weakref
from typing import Any

from asgiref.testing import ApplicationCommunicator as AsgirefCommunicator
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from prometheus_client import REGISTRY

from chatsite.accounts import services as account_services
from chatsite.asgi import application
from tests.factories import DEFAULT_PASSWORD, UserFactory

TIMEOUT = 2

# --- WebSocket communicators ----------------------------------------------------------------

# Every communicator a test creates; the `_disconnect_communicators` fixture (tests/conftest.py)
# disconnects those still running when the test ends, passed or failed, so one failed assertion
# cannot leave a socket (and its connection slots) behind for the next test.
created: weakref.WeakSet[AsgirefCommunicator] = weakref.WeakSet()


async def disconnect_leftovers() -> None:
    for comm in list(created):
        future = getattr(comm, "future", None)
        if future is None or future.done():
            continue
        with contextlib.suppress(Exception, asyncio.CancelledError):
            if isinstance(comm, WebsocketCommunicator):
                await comm.disconnect(timeout=2)
            else:
                await comm.wait(timeout=2)
    created.clear()


class Communicator(WebsocketCommunicator):
    """channels' WebsocketCommunicator, minus its patch that turns close_old_connections into a
    no-op while the test waits for the app.

    That patch protects TestCase's shared connection; these tests are transactional and the
    consumer's ORM runs in worker threads, which must return their pooled connections as they do
    in production. Otherwise a worker thread can end holding one, and pytest cannot drop the
    test database ("being accessed by other users").
    """

    send_input = AsgirefCommunicator.send_input
    receive_output = AsgirefCommunicator.receive_output

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        created.add(self)


def communicator(
    token: str | None = None, *, query: str = "", origin: str | None = None, client_ip: str | None = None
) -> Communicator:
    """A /ws communicator, not yet connected: bearer header when `token` is given."""
    headers = []
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    comm = Communicator(application, f"/ws{query}", headers=headers)
    if client_ip is not None:
        comm.scope["client"] = (client_ip, 50000)  # read lazily, when the app starts
    return comm


async def ws_connect(token: str | None, query: str = "", *, timeout: float = 5, **kwargs) -> Communicator:
    """A connected /ws communicator; the opening frames are left to read."""
    comm = communicator(token, query=query, **kwargs)
    connected, _ = await comm.connect(timeout=timeout)
    assert connected
    return comm


async def open_ws(token: str | None, **kwargs) -> tuple[Communicator, dict[str, Any]]:
    """Connect and read the opening frames; returns the communicator and the hello frame."""
    comm = await ws_connect(token, timeout=TIMEOUT, **kwargs)
    hello = await comm.receive_json_from(timeout=TIMEOUT)
    assert hello["type"] == "hello", hello
    heartbeat = await comm.receive_json_from(timeout=TIMEOUT)
    assert heartbeat["type"] == "heartbeat", heartbeat
    return comm, hello


# --- reading frames ---------------------------------------------------------------------------


async def next_frame(comm: WebsocketCommunicator, frame_type: str, timeout: float = 5) -> dict:
    """The next frame of a type, skipping others (hello, heartbeats)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        frame = await comm.receive_json_from(timeout=max(0.01, deadline - loop.time()))
        if frame["type"] == frame_type:
            return frame


async def frames_until(comm: WebsocketCommunicator, done, timeout: float = 5) -> list[dict]:
    """Every frame up to and including the first for which `done(frame)` is true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    frames = []
    while True:
        frames.append(await comm.receive_json_from(timeout=max(0.01, deadline - loop.time())))
        if done(frames[-1]):
            return frames


async def frames_for(comm: WebsocketCommunicator, seconds: float) -> list[dict]:
    """Every frame that arrives within `seconds` (heartbeats included)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    frames = []
    while (left := deadline - loop.time()) > 0:
        if await comm.receive_nothing(timeout=min(left, 0.05)):
            continue
        frames.append(await comm.receive_json_from())
    return frames


async def frames_until_quiet(comm: WebsocketCommunicator, quiet: float = 0.5) -> list[dict]:
    """Every frame that arrives until none has for `quiet` seconds."""
    frames = []
    # receive_nothing, unlike a timed-out receive, does not cancel the application.
    while not await comm.receive_nothing(timeout=quiet):
        frames.append(await comm.receive_json_from())
    return frames


async def until_closed(comm: Communicator, timeout: float = TIMEOUT) -> tuple[int, list[dict]]:
    """Read frames until the server closes; returns the close code and the frames seen."""
    frames = []
    deadline = time.monotonic() + timeout
    while True:
        out = await comm.receive_output(timeout=max(0.01, deadline - time.monotonic()))
        if out["type"] == "websocket.close":
            return out["code"], frames
        frames.append(json.loads(out["text"]))


async def assert_alive(comm: Communicator) -> None:
    await comm.send_json_to({"type": "ping", "ref": "alive?"})
    frame = await comm.receive_json_from(timeout=TIMEOUT)
    while frame["type"] == "heartbeat":
        frame = await comm.receive_json_from(timeout=TIMEOUT)
    assert frame == {"type": "pong", "ref": "alive?"}


# --- users and metrics ------------------------------------------------------------------------


def _user_and_token():
    user = UserFactory()
    _session, token = account_services.session_login(username=user.username, password=DEFAULT_PASSWORD)
    return user, token


async def new_user_and_token():
    return await database_sync_to_async(_user_and_token)()


async def rejected_count(reason: str) -> float:
    # In a thread: collecting REGISTRY also runs collectors that read the database.
    value = await database_sync_to_async(REGISTRY.get_sample_value)(
        "ws_connection_rejected_total", {"reason": reason}
    )
    return value or 0.0


# --- SSE --------------------------------------------------------------------------------------


class SseClient:
    """GET an SSE path through the ASGI app in this process and parse its events."""

    def __init__(self, path: str, token: str, headers: list[tuple[bytes, bytes]] | None = None):
        path, _, query = path.partition("?")
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            # As behind the TLS-terminating load balancer (the app redirects plain HTTP otherwise).
            "headers": [
                (b"host", b"localhost"),
                (b"x-forwarded-proto", b"https"),
                (b"authorization", f"Bearer {token}".encode()),
                *(headers or []),
            ],
            "client": ("127.0.0.1", 5555),
            "server": ("localhost", 80),
        }
        self.status: int | None = None
        self.events: asyncio.Queue = asyncio.Queue()
        self._disconnect = asyncio.Event()
        self._buffer = b""
        self.finished = asyncio.Event()

    async def _receive(self):
        if not getattr(self, "_sent_request", False):
            self._sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._disconnect.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message):
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self._buffer += message.get("body", b"")
            while b"\n\n" in self._buffer:
                block, self._buffer = self._buffer.split(b"\n\n", 1)
                fields = dict(
                    line.split(": ", 1)
                    for line in block.decode().splitlines()
                    if ": " in line and not line.startswith(":")
                )
                if "data" in fields:
                    await self.events.put(
                        {
                            "id": fields.get("id"),
                            "event": fields.get("event"),
                            "data": json.loads(fields["data"]),
                        }
                    )
            if not message.get("more_body", False):
                self.finished.set()

    async def __aenter__(self):
        self.task = asyncio.create_task(application(self.scope, self._receive, self._send))
        return self

    async def next_event(self, event_type: str, timeout: float = 5) -> dict:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = await asyncio.wait_for(self.events.get(), max(0.01, deadline - loop.time()))
            if event["event"] == event_type:
                return event

    async def __aexit__(self, *exc):
        self._disconnect.set()
        try:
            await asyncio.wait_for(self.task, 5)
        except (TimeoutError, asyncio.CancelledError):
            self.task.cancel()
