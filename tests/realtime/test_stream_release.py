"""Every exit path of a stream gives back what it holds (issue 11, item 2).

A failure is injected into each stage of a /ws and a /dm/sse stream (opening, reading a frame,
a frame handler, a live event, the cleanup itself, a response that is never read); each ends in an
error frame or a documented close code, and afterwards the per-process connection slots, the
active-connection gauge and the in-process stream index are back where they were. The issue's
reproduction was one frame that raised in receive(): ~50 of them locked an address out.
"""

from __future__ import annotations

import asyncio
import gc

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncRequestFactory

from chatsite.accounts.selectors import session_for_token
from chatsite.metrics import WS_CONNECTIONS_ACTIVE, WS_DISCONNECTIONS_TOTAL
from chatsite.realtime import admission, consumers, open_streams, registry, relay
from chatsite.realtime.limits import connections
from chatsite.realtime.sse import sse_response
from tests.dm.helpers import party
from tests.realtime.clients import SseClient, communicator, new_user_and_token, open_ws, until_closed

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 2
ADDRESS = "198.51.100.23"


class Injected(Exception):
    """The failure a test injects."""


class FaultySource(registry.StreamSource):
    """A throwaway domain feed that fails at the stage a test chooses."""

    name = "test_faulty"
    fail_on: set[str] = set()

    async def on_open(self, stream):
        if "open" in self.fail_on:
            raise Injected("on_open")

    async def on_event(self, stream, frame):
        if "event" in self.fail_on:
            raise Injected("on_event")
        return frame


@pytest.fixture
def faulty():
    source = FaultySource()
    source.fail_on = set()
    registry.register_source(source)
    yield source
    registry._sources.pop(FaultySource.name, None)


def active(transport: str) -> float:
    # The gauge itself: collecting the whole registry would run collectors that read the database.
    return WS_CONNECTIONS_ACTIVE.labels(transport=transport)._value.get()


def assert_released(transport: str, gauge_before: float) -> None:
    assert (connections.total, dict(connections.per_ip)) == (0, {}), "connection slots not released"
    assert active(transport) == gauge_before, "websocket_connections_active not decremented"
    assert not open_streams._by_channel, "stream left in the in-process index"


async def device_token() -> tuple[int, str]:
    """A session bound to a registered device, as /dm/sse requires."""
    device_party = await database_sync_to_async(party)()
    return device_party.user.pk, device_party.token


# --- /ws --------------------------------------------------------------------------------------


async def test_ws_failure_while_opening_closes_1011_and_releases(faulty):
    faulty.fail_on = {"open"}
    before = active("ws")
    _, bearer = await new_user_and_token()
    comm = communicator(bearer, client_ip=ADDRESS)
    await comm.connect(timeout=TIMEOUT)
    code, frames = await until_closed(comm)
    assert code == 1011
    assert frames[-1] == {"type": "closing", "code": 1011, "reason": "internal error"}
    await comm.wait(TIMEOUT)
    assert_released("ws", before)


async def test_ws_failure_in_a_frame_handler_is_an_error_frame_and_the_socket_stays(faulty):
    async def broken(stream, frame):
        raise Injected("handler")

    registry.register_frame("test.broken", broken)
    try:
        before = active("ws")
        _, bearer = await new_user_and_token()
        comm, _ = await open_ws(bearer, client_ip=ADDRESS)
        await comm.send_json_to({"type": "test.broken", "ref": "b"})
        error = await comm.receive_json_from(timeout=TIMEOUT)
        assert (error["type"], error["code"], error["ref"]) == ("error", "INTERNAL_ERROR", "b")
        await comm.send_json_to({"type": "ping", "ref": "p"})
        assert await comm.receive_json_from(timeout=TIMEOUT) == {"type": "pong", "ref": "p"}
        await comm.disconnect()
        assert_released("ws", before)
    finally:
        registry._frames.pop("test.broken", None)


async def test_ws_failure_while_reading_a_frame_is_an_error_frame_and_releases_later(monkeypatch):
    # The shape: something in receive() itself raised (RecursionError from json.loads).
    async def raising_receive(self, text_data=None, bytes_data=None, **kwargs):
        raise RecursionError("maximum recursion depth exceeded")

    before = active("ws")
    _, bearer = await new_user_and_token()
    comm, _ = await open_ws(bearer, client_ip=ADDRESS)
    monkeypatch.setattr(consumers.GatewayConsumer, "receive", raising_receive)
    await comm.send_to(text_data='{"type":"ping"}')
    error = await comm.receive_json_from(timeout=TIMEOUT)
    assert (error["type"], error["code"]) == ("error", "INTERNAL_ERROR")
    await comm.disconnect()
    assert_released("ws", before)


async def test_fifty_failing_frames_from_one_address_do_not_lock_it_out(monkeypatch, settings):
    settings.MAX_CONNS_PER_IP = 3

    async def raising_receive(self, text_data=None, bytes_data=None, **kwargs):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(consumers.GatewayConsumer, "receive", raising_receive)
    _, bearer = await new_user_and_token()
    for _ in range(50):
        comm, _ = await open_ws(bearer, client_ip=ADDRESS)
        await comm.send_to(text_data="[" * 3000 + "]" * 3000)
        assert (await comm.receive_json_from(timeout=TIMEOUT))["code"] == "INTERNAL_ERROR"
        await comm.disconnect()
    _, bystander = await new_user_and_token()
    comm, _ = await open_ws(bystander, client_ip=ADDRESS)  # same address: admitted
    await comm.disconnect()


def disconnections(label: str) -> float:
    return WS_DISCONNECTIONS_TOTAL.labels(transport="ws", reason=label)._value.get()


async def test_ws_failure_in_a_live_event_closes_1011_and_releases(faulty):
    faulty.fail_on = {"event"}
    before = active("ws")
    counted = disconnections("internal_error")
    user, bearer = await new_user_and_token()
    comm, _ = await open_ws(bearer, client_ip=ADDRESS)
    await database_sync_to_async(relay.publish_to_user)(user.pk, {"type": "test.x"}, source=FaultySource.name)
    code, frames = await until_closed(comm)
    assert code == 1011
    assert frames[-1] == {"type": "closing", "code": 1011, "reason": "internal error"}
    await comm.wait(TIMEOUT)
    assert_released("ws", before)
    # The metric label is the close code's name, never the human-readable reason.
    assert disconnections("internal_error") == counted + 1


async def test_ws_failure_during_cleanup_still_releases_the_slot(monkeypatch):
    async def broken_unregister(*args, **kwargs):
        raise Injected("unregister")

    before = active("ws")
    _, bearer = await new_user_and_token()
    comm, _ = await open_ws(bearer, client_ip=ADDRESS)
    monkeypatch.setattr(admission, "unregister", broken_unregister)
    await comm.disconnect()
    assert_released("ws", before)


async def test_ws_consumer_failing_outside_a_frame_releases_on_the_way_out(monkeypatch):
    async def broken_disconnect(self, code):
        raise Injected("disconnect")

    before = active("ws")
    _, bearer = await new_user_and_token()
    comm, _ = await open_ws(bearer, client_ip=ADDRESS)
    monkeypatch.setattr(consumers.GatewayConsumer, "disconnect", broken_disconnect)
    await comm.send_input({"type": "websocket.disconnect", "code": 1000})
    with pytest.raises(Injected):
        await comm.wait(TIMEOUT)
    assert_released("ws", before)


# --- /dm/sse ------------------------------------------------------------------------------------


async def test_sse_failure_while_opening_ends_with_a_1011_closing_event_and_releases(faulty):
    faulty.fail_on = {"open"}
    before = active("sse")
    _, bearer = await device_token()
    async with SseClient("/dm/sse", bearer) as sse:
        closing = await sse.next_event("closing")
        assert closing["data"] == {"type": "closing", "code": 1011, "reason": "internal error"}
        await sse.finished.wait()
    assert sse.status == 200
    assert_released("sse", before)


async def test_sse_failure_in_a_live_event_ends_with_a_1011_closing_event_and_releases(faulty):
    faulty.fail_on = {"event"}
    before = active("sse")
    user_id, bearer = await device_token()
    async with SseClient("/dm/sse", bearer) as sse:
        await sse.next_event("heartbeat")
        await database_sync_to_async(relay.publish_to_user)(
            user_id, {"type": "test.x"}, source=FaultySource.name
        )
        closing = await sse.next_event("closing")
        assert closing["data"]["code"] == 1011
        await sse.finished.wait()
    assert_released("sse", before)


async def test_sse_response_dropped_before_it_is_read_releases_its_slot():
    _, bearer = await device_token()
    session = await database_sync_to_async(session_for_token)(bearer)
    request = AsyncRequestFactory().get("/dm/sse", REMOTE_ADDR=ADDRESS)
    response = await sse_response(request, session=session, feature="dm")
    assert connections.total == 1
    del response
    gc.collect()
    assert (connections.total, dict(connections.per_ip)) == (0, {})


async def test_sse_failure_during_cleanup_still_releases_the_slot(monkeypatch):
    async def broken_unregister(*args, **kwargs):
        raise Injected("unregister")

    before = active("sse")
    _, bearer = await device_token()
    monkeypatch.setattr(admission, "unregister", broken_unregister)
    async with SseClient("/dm/sse", bearer) as sse:
        await sse.next_event("heartbeat")
    assert_released("sse", before)


async def test_sse_full_of_unread_frames_still_ends_when_closed_and_releases(settings):
    # A client that reads nothing: the queue is full when the stream is closed (a revocation, a
    # flag). The closing frame and the end marker still fit, so the response ends and releases.
    settings.SSE_MAX_QUEUED_FRAMES = 1
    before = active("sse")
    _, bearer = await device_token()
    session = await database_sync_to_async(session_for_token)(bearer)
    request = AsyncRequestFactory().get("/dm/sse", REMOTE_ADDR=ADDRESS)
    response = await sse_response(request, session=session, feature="dm")
    body = response.streaming_content.__aiter__()
    assert await body.__anext__() == b": stream open\n\n"
    first = asyncio.ensure_future(body.__anext__())  # opens the stream; its heartbeat fills the queue
    [stream] = list(open_streams._by_channel.values())
    for _ in range(50):
        if stream.state.get("dm") is not None:
            break
        await asyncio.sleep(0.02)
    await stream.close(4401, "session ended")

    async def rest() -> list[bytes]:
        return [await first] + [chunk async for chunk in body]

    chunks = await asyncio.wait_for(rest(), 5)  # before the fix: waited forever, slot held
    assert b"event: closing" in chunks[-1]
    assert_released("sse", before)
