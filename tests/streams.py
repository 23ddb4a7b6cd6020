"""Clients for the realtime gateway in tests: WebSocket (channels' communicator) and an
in-process SSE reader that drives the ASGI app directly."""

from __future__ import annotations

import asyncio
import json

from chatsite.asgi import application
from tests.realtime.helpers import Communicator as WebsocketCommunicator


async def ws_connect(token: str, query: str = "") -> WebsocketCommunicator:
    comm = WebsocketCommunicator(
        application, f"/ws{query}", headers=[(b"authorization", f"Bearer {token}".encode())]
    )
    connected, _ = await comm.connect(timeout=5)
    assert connected
    return comm


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
