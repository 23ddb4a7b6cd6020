"""Flow control of device streams (issue 11, item 1): a backlog far past
DM_MAX_UNACKED_PER_STREAM is delivered in full over /ws and /dm/sse. At the limit a stream pauses
(it is not cut), acknowledgements read during the replay resume it, and a reconnect from a
cursor always makes progress."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings

from dm.models import Delivery
from dm.services.messages import Envelope, message_send
from tests.dm.helpers import open_conversation, party
from tests.realtime.clients import SseClient, frames_until, frames_until_quiet, next_frame, ws_connect

pytestmark = pytest.mark.django_db(transaction=True)

# Backlogs are stored through the service in a loop; the send rate limits are not under test.
unthrottled = override_settings(DM_SEND_RATE_PER_MIN=100_000, DM_SEND_RATE_PER_HOUR=100_000)


@database_sync_to_async
def offline_backlog(count: int):
    """Alice and Bob, and `count` DMs queued for Bob's device while it is offline."""
    alice, bob = party(), party()
    conv = open_conversation(alice, bob)
    for _ in range(count):
        message_send(
            sender_id=alice.user.pk,
            sender_device_id=alice.device_id,
            conversation_id=conv,
            client_message_id=str(uuid.uuid4()),
            envelopes=[Envelope(bob.device_id, "AAAA", 1)],
        )
    return alice, bob


@database_sync_to_async
def rest_ack(party_, up_to: int) -> None:
    resp = party_.client.post("/dm/ack", {"up_to": up_to}, format="json")
    assert resp.status_code == 200, resp.content


@database_sync_to_async
def acknowledged_count(device_id) -> int:
    return Delivery.objects.filter(device_id=device_id, delivered_at__isnull=False).count()


async def ws_receive_all(ws, total: int, *, ack_every: int, timeout: float = 60) -> list[int]:
    """Read dm.message frames, acknowledging every `ack_every` with a dm.ack frame, as docs/dm.md
    asks, until `total` arrived; fails on a closing frame."""
    cursors: list[int] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(cursors) < total:
        frame = await ws.receive_json_from(timeout=max(0.01, deadline - loop.time()))
        assert frame["type"] != "closing", frame
        if frame["type"] == "dm.message":
            cursors.append(frame["cursor"])
            if len(cursors) % ack_every == 0:
                await ws.send_json_to({"type": "dm.ack", "up_to": frame["cursor"]})
    return cursors


@unthrottled
@override_settings(DM_MAX_UNACKED_PER_STREAM=50)
async def test_ws_backlog_eight_times_the_limit_is_delivered_in_full_when_acknowledged():
    alice, bob = await offline_backlog(400)
    ws = await ws_connect(bob.token, "?cursor=0")
    try:
        cursors = await ws_receive_all(ws, 400, ack_every=20)
        assert cursors == list(range(1, 401))  # every one, once, in order
        await ws.send_json_to({"type": "dm.ack", "up_to": 400, "ref": "last"})
        frames = await frames_until(ws, lambda f: f.get("ref") == "last")
        assert frames[-1]["type"] == "dm.acked"
        assert not [f for f in frames if f["type"] in ("closing", "dm.message")]
        assert await acknowledged_count(bob.device_id) == 400
    finally:
        await ws.disconnect()


@unthrottled
@override_settings(DM_MAX_UNACKED_PER_STREAM=3)
async def test_ws_stream_pauses_at_the_limit_stays_open_and_resumes_on_ack():
    alice, bob = await offline_backlog(6)
    ws = await ws_connect(bob.token)
    try:
        frames = await frames_until_quiet(ws, quiet=0.5)
        assert [f["cursor"] for f in frames if f["type"] == "dm.message"] == [1, 2, 3]
        assert not [f for f in frames if f["type"] == "closing"]
        await ws.send_json_to({"type": "ping", "ref": "alive"})
        assert (await next_frame(ws, "pong"))["ref"] == "alive"  # paused, not cut
        await ws.send_json_to({"type": "dm.ack", "up_to": 2})
        assert [(await next_frame(ws, "dm.message"))["cursor"] for _ in range(2)] == [4, 5]
        assert await ws.receive_nothing(timeout=0.3)  # 3, 4, 5 in flight: paused again
    finally:
        await ws.disconnect()


@unthrottled
@override_settings(DM_MAX_UNACKED_PER_STREAM=3)
async def test_a_live_message_past_the_limit_waits_in_the_queue_and_follows_the_ack():
    alice, bob = await offline_backlog(3)
    ws = await ws_connect(bob.token)
    try:
        assert [(await next_frame(ws, "dm.message"))["cursor"] for _ in range(3)] == [1, 2, 3]
        await database_sync_to_async(
            lambda: message_send(
                sender_id=alice.user.pk,
                sender_device_id=alice.device_id,
                conversation_id=Delivery.objects.filter(device_id=bob.device_id)
                .first()
                .message.conversation_id,
                client_message_id=str(uuid.uuid4()),
                envelopes=[Envelope(bob.device_id, "AAAA", 1)],
            )
        )()
        assert await ws.receive_nothing(timeout=0.3)
        await ws.send_json_to({"type": "dm.ack", "up_to": 1})
        assert (await next_frame(ws, "dm.message"))["cursor"] == 4
    finally:
        await ws.disconnect()


@unthrottled
@override_settings(DM_MAX_UNACKED_PER_STREAM=50)
async def test_a_reconnect_from_a_cursor_always_makes_progress_without_acks():
    alice, bob = await offline_backlog(120)
    received: list[int] = []
    for _ in range(3):
        query = f"?cursor={received[-1]}" if received else "?cursor=0"
        ws = await ws_connect(bob.token, query)
        try:
            frames = await frames_until_quiet(ws, quiet=0.4)
        finally:
            await ws.disconnect()
        assert not [f for f in frames if f["type"] == "closing"]
        batch = [f["cursor"] for f in frames if f["type"] == "dm.message"]
        assert batch, "a reconnect delivered nothing"
        received += batch
    assert received == list(range(1, 121))


@unthrottled
@override_settings(DM_MAX_UNACKED_PER_STREAM=3)
async def test_dm_sync_answers_while_the_stream_is_paused():
    alice, bob = await offline_backlog(6)
    ws = await ws_connect(bob.token)
    try:
        assert [(await next_frame(ws, "dm.message"))["cursor"] for _ in range(3)] == [1, 2, 3]
        await ws.send_json_to({"type": "dm.sync", "since": 4, "ref": "s"})
        frames = await frames_until_quiet(ws, quiet=0.4)
        assert [f["cursor"] for f in frames if f["type"] == "dm.message"] == [5, 6]
        synced = [f for f in frames if f["type"] == "dm.synced"]
        assert synced == [{"type": "dm.synced", "cursor": 6, "ref": "s"}]
    finally:
        await ws.disconnect()


@unthrottled
@override_settings(DM_MAX_UNACKED_PER_STREAM=50)
async def test_sse_backlog_eight_times_the_limit_is_delivered_when_acknowledged_over_rest():
    alice, bob = await offline_backlog(400)
    async with SseClient("/dm/sse?cursor=0", bob.token) as sse:
        cursors: list[int] = []
        while len(cursors) < 400:
            event = await sse.next_event("dm.message", timeout=10)
            cursors.append(event["data"]["cursor"])
            if len(cursors) % 20 == 0:
                await rest_ack(bob, cursors[-1])  # POST /dm/ack wakes the paused stream
        assert cursors == list(range(1, 401))
    assert await acknowledged_count(bob.device_id) == 400


@unthrottled
@override_settings(DM_MAX_UNACKED_PER_STREAM=3)
async def test_sse_stream_pauses_at_the_limit_until_a_rest_ack():
    alice, bob = await offline_backlog(5)
    async with SseClient("/dm/sse", bob.token) as sse:
        assert [(await sse.next_event("dm.message"))["id"] for _ in range(3)] == ["1", "2", "3"]
        with pytest.raises(TimeoutError):
            await sse.next_event("dm.message", timeout=0.4)
        await rest_ack(bob, 3)
        assert [(await sse.next_event("dm.message"))["id"] for _ in range(2)] == ["4", "5"]
