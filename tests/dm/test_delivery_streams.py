"""Live delivery of DMs over /ws and /dm/sse: replay from a cursor, no gap and no duplicate,
and a real Redis outage that loses nothing."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings
from django.utils import timezone

from chatsite.accounts import services as account_services
from chatsite.realtime import relay
from chatsite.realtime.names import device_group
from dm.models import Delivery, Device
from dm.services import messages as message_services
from dm.services.messages import Envelope
from tests.conftest import login
from tests.dm.helpers import pair, send
from tests.realtime.clients import (
    SseClient,
    frames_for,
    frames_until,
    frames_until_quiet,
    next_frame,
    ws_connect,
)
from tests.redis_server import RedisProcess, relay_on

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def send_as(sender, conv, device_ids, **kw):
    resp = send(sender, conv, device_ids, **kw)
    assert resp.status_code in (200, 201), resp.content
    return resp.json()


def staff_dm_metrics(party) -> dict:
    party.user.is_staff = True
    party.user.save(update_fields=["is_staff"])
    resp = party.client.get("/dm/metrics")
    assert resp.status_code == 200, resp.content
    return resp.json()


async def test_message_arrives_live_on_the_recipient_device_stream():
    alice, bob, conv = await pair()
    ws = await ws_connect(bob.token)
    sent = await send_as(alice, conv, [bob.device_id], text="Y2lwaGVy")
    frame = await next_frame(ws, "dm.message")
    assert frame["message_id"] == sent["message_id"]
    assert frame["cursor"] == 1 and frame["ciphertext"] == "Y2lwaGVy"
    assert frame["sender_device_id"] == alice.device_id
    await ws.disconnect()


async def test_reconnect_with_cursor_replays_the_gap_once_in_order_then_goes_live():
    alice, bob, conv = await pair()
    ws = await ws_connect(bob.token)
    await send_as(alice, conv, [bob.device_id])
    assert (await next_frame(ws, "dm.message"))["cursor"] == 1
    await ws.disconnect()

    missed = [(await send_as(alice, conv, [bob.device_id]))["message_id"] for _ in range(3)]
    ws = await ws_connect(bob.token, "?cursor=1")
    replayed = [await next_frame(ws, "dm.message") for _ in range(3)]
    assert [f["message_id"] for f in replayed] == missed
    assert [f["cursor"] for f in replayed] == [2, 3, 4]
    live = await send_as(alice, conv, [bob.device_id])
    assert (await next_frame(ws, "dm.message"))["message_id"] == live["message_id"]
    extra = [f for f in await frames_until_quiet(ws) if f["type"] == "dm.message"]
    assert extra == []
    await ws.disconnect()


@pytest.mark.parametrize(
    "raw",
    ["%2B1", "%201", "%D9%A1", "1_000", "-1", "1e3", "184467440737095516160"],
    ids=["plus", "space", "arabic-indic", "underscore", "negative", "exponent", "over-64-bits"],
)
async def test_a_cursor_that_is_not_plain_digits_is_ignored_and_the_stream_resumes_after_the_ack(raw):
    alice, bob, conv = await pair()
    for _ in range(2):
        await send_as(alice, conv, [bob.device_id])
    ws = await ws_connect(bob.token, f"?cursor={raw}")
    frames = await frames_until_quiet(ws, quiet=0.3)
    assert [f["cursor"] for f in frames if f["type"] == "dm.message"] == [1, 2]
    await ws.disconnect()


async def test_reconnect_without_cursor_replays_what_is_unacknowledged():
    alice, bob, conv = await pair()
    for _ in range(2):
        await send_as(alice, conv, [bob.device_id])
    ws = await ws_connect(bob.token)
    first = [await next_frame(ws, "dm.message") for _ in range(2)]
    await ws.send_json_to({"type": "dm.ack", "up_to": first[0]["cursor"], "ref": 7})
    assert await next_frame(ws, "dm.acked") == {"type": "dm.acked", "acknowledged": 1, "ref": 7}
    await ws.disconnect()

    ws = await ws_connect(bob.token)
    again = await next_frame(ws, "dm.message")
    assert again["cursor"] == 2
    assert [f for f in await frames_until_quiet(ws) if f["type"] == "dm.message"] == []
    await ws.disconnect()


async def test_dm_sync_frame_replays_from_the_given_cursor():
    alice, bob, conv = await pair()
    for _ in range(3):
        await send_as(alice, conv, [bob.device_id])
    ws = await ws_connect(bob.token, "?cursor=3")
    await ws.send_json_to({"type": "dm.sync", "since": 1, "ref": "s"})
    frames = [await next_frame(ws, "dm.message") for _ in range(2)]
    assert [f["cursor"] for f in frames] == [2, 3]
    assert (await next_frame(ws, "dm.synced"))["cursor"] == 3
    await ws.disconnect()


async def test_dm_send_frame_uses_the_same_idempotency_as_rest():
    alice, bob, conv = await pair()
    ws = await ws_connect(alice.token)
    frame = {
        "type": "dm.send",
        "conversation_id": conv,
        "client_message_id": "c-1",
        "envelopes": [{"device_id": bob.device_id, "ciphertext": "AAAA", "type": 0}],
    }
    await ws.send_json_to({**frame, "ref": 1})
    first = await next_frame(ws, "dm.sent")
    await ws.send_json_to({**frame, "ref": 2})
    second = await next_frame(ws, "dm.sent")
    assert first["duplicate"] is False and second["duplicate"] is True
    assert first["message_id"] == second["message_id"] and second["ref"] == 2
    assert await database_sync_to_async(Delivery.objects.filter(device_id=bob.device_id).count)() == 1
    await ws.disconnect()


async def test_dm_send_frame_errors_use_the_rest_codes():
    alice, bob, conv = await pair()
    ws = await ws_connect(alice.token)
    await ws.send_json_to(
        {"type": "dm.send", "ref": "x", "conversation_id": conv, "client_message_id": "c", "envelopes": []}
    )
    error = await next_frame(ws, "error")
    assert error["code"] == "VALIDATION_ERROR" and error["ref"] == "x" and "envelopes" in error["errors"]
    await ws.send_json_to(
        {
            "type": "dm.send",
            "ref": "y",
            "conversation_id": conv,
            "client_message_id": "c",
            "envelopes": [{"device_id": alice.device_id, "ciphertext": "AAAA"}],
        }
    )
    mismatch = await next_frame(ws, "error")
    assert mismatch["code"] == "DEVICE_MISMATCH" and mismatch["missing_devices"] == [bob.device_id]
    await ws.disconnect()


async def test_dm_frames_from_a_session_without_device_are_device_required():
    alice, bob, conv = await pair()
    token = await database_sync_to_async(login)(alice.user)
    ws = await ws_connect(token)
    await ws.send_json_to({"type": "dm.ack", "up_to": 1})
    assert (await next_frame(ws, "error"))["code"] == "DEVICE_REQUIRED"
    await ws.disconnect()


async def test_feature_flag_off_tells_open_streams_and_refuses_dm_frames():
    alice, bob, conv = await pair()
    ws = await ws_connect(bob.token)
    await next_frame(ws, "heartbeat")
    with override_settings(E2EE_DM_ENABLED=False):
        disabled = await next_frame(ws, "feature.disabled", timeout=3)
        assert disabled["detail"] == "E2EE DM is not enabled"
        await ws.send_json_to({"type": "dm.ack", "up_to": 1})
        assert (await next_frame(ws, "error"))["code"] == "FEATURE_DISABLED"
    await ws.disconnect()


async def test_sse_replays_from_last_event_id_with_ids_and_heartbeats():
    alice, bob, conv = await pair()
    for _ in range(3):
        await send_as(alice, conv, [bob.device_id])
    async with SseClient("/dm/sse", bob.token, headers=[(b"last-event-id", b"1")]) as sse:
        heartbeat = await sse.next_event("heartbeat")  # the first heartbeat comes before the replay
        assert heartbeat["data"]["relay_lag"] is False
        events = [await sse.next_event("dm.message") for _ in range(2)]
        assert [e["id"] for e in events] == ["2", "3"]
        live = await send_as(alice, conv, [bob.device_id])
        assert (await sse.next_event("dm.message"))["data"]["message_id"] == live["message_id"]
    assert sse.status == 200


async def test_sse_last_event_id_wins_over_a_cursor_left_in_the_url():
    alice, bob, conv = await pair()
    for _ in range(3):
        await send_as(alice, conv, [bob.device_id])
    async with SseClient("/dm/sse?cursor=0", bob.token, headers=[(b"last-event-id", b"2")]) as sse:
        assert (await sse.next_event("dm.message"))["id"] == "3"


async def test_sse_stream_closes_gracefully_when_the_flag_goes_off():
    alice, bob, conv = await pair()
    async with SseClient("/dm/sse", bob.token) as sse:
        await sse.next_event("heartbeat")
        with override_settings(E2EE_DM_ENABLED=False):
            assert (await sse.next_event("feature.disabled", timeout=3))["data"]["feature"] == "dm"
            closing = await sse.next_event("closing")
            assert closing["data"]["code"] == 4403
            await asyncio.wait_for(sse.finished.wait(), 3)


async def test_redis_outage_mid_stream_loses_nothing_and_duplicates_nothing():
    server = RedisProcess()
    server.start()
    try:
        with relay_on(
            server,
            RELAY_POLL_INTERVAL_MS=200,
            RELAY_HEALTH_CHECK_INTERVAL_MS=100,
            WS_PING_INTERVAL_MS=300,
            WS_PING_TIMEOUT_MS=60000,
        ):
            alice, bob, conv = await pair()
            ws = await ws_connect(bob.token)
            await send_as(alice, conv, [bob.device_id])
            frames = [await next_frame(ws, "dm.message")]

            server.stop()
            during = await send_as(alice, conv, [bob.device_id])  # stored even though the relay is down
            seen = await frames_until(
                ws, lambda f: f["type"] == "dm.message"
            )  # found by polling the database
            assert seen[-1]["message_id"] == during["message_id"]
            frames.append(seen[-1])
            metrics = await database_sync_to_async(staff_dm_metrics)(alice)
            assert metrics["redis_status"] == "unavailable"
            heartbeats = [f for f in seen if f["type"] == "heartbeat"]
            if not any(h["relay_lag"] for h in heartbeats):
                heartbeats = await frames_until(ws, lambda f: f["type"] == "heartbeat" and f["relay_lag"])
            assert heartbeats[-1]["relay_lag"] is True

            server.start()
            await frames_until(ws, lambda f: f["type"] == "heartbeat" and not f["relay_lag"])
            assert (await database_sync_to_async(staff_dm_metrics)(alice))["redis_status"] == "available"
            after = await send_as(alice, conv, [bob.device_id])
            frames.append(await next_frame(ws, "dm.message"))
            assert frames[-1]["message_id"] == after["message_id"]
            frames += [f for f in await frames_for(ws, seconds=1.0) if f["type"] == "dm.message"]
            assert [f["cursor"] for f in frames] == [1, 2, 3]
            await ws.disconnect()
    finally:
        server.stop()


@database_sync_to_async
def store_unpublished(sender, conv, device_ids):
    """Store a message as message_send does, without its publish (as if the relay dropped it)."""
    request = message_services.send_prepare(
        sender_id=sender.user.pk,
        sender_device_id=sender.device_id,
        conversation_id=conv,
        client_message_id=f"unpublished-{uuid.uuid4()}",
        envelopes=[Envelope(d, "AAAA", 1) for d in device_ids],
    )
    return dict(message_services._store(request).deliveries)


async def publish_frame(device_id, frame):
    assert await relay.apublish_event(device_group(device_id), frame, source="dm")


async def test_events_that_overtake_an_earlier_one_are_held_and_sent_in_order():
    alice, bob, conv = await pair()
    ws = await ws_connect(bob.token)
    first = (await store_unpublished(alice, conv, [bob.device_id]))[bob.device_id]
    second = (await store_unpublished(alice, conv, [bob.device_id]))[bob.device_id]
    await publish_frame(bob.device_id, second)
    await publish_frame(bob.device_id, first)
    frames = [await next_frame(ws, "dm.message") for _ in range(2)]
    assert [f["cursor"] for f in frames] == [1, 2]
    assert [f for f in await frames_for(ws, seconds=0.3) if f["type"] == "dm.message"] == []
    await ws.disconnect()


@override_settings(DM_REORDER_WAIT_MS=100)
async def test_an_event_the_relay_lost_is_read_from_the_database_after_the_wait():
    alice, bob, conv = await pair()
    ws = await ws_connect(bob.token)
    await store_unpublished(alice, conv, [bob.device_id])  # its publish is "lost"
    second = (await store_unpublished(alice, conv, [bob.device_id]))[bob.device_id]
    await publish_frame(bob.device_id, second)
    frames = [await next_frame(ws, "dm.message") for _ in range(2)]
    assert [f["cursor"] for f in frames] == [1, 2]
    await ws.disconnect()


async def _send_frame_error(sender, conv, device_ids, text="AAAA"):
    ws = await ws_connect(sender.token)
    await ws.send_json_to(
        {
            "type": "dm.send",
            "ref": "e",
            "conversation_id": conv,
            "client_message_id": "err-1",
            "envelopes": [{"device_id": d, "ciphertext": text, "type": 1} for d in device_ids],
        }
    )
    error = await next_frame(ws, "error")
    await ws.disconnect()
    assert error["ref"] == "e"
    return error


async def test_dm_send_frame_from_a_blocked_sender_is_blocked():
    alice, bob, conv = await pair()
    await database_sync_to_async(account_services.block_add)(blocker=bob.user, user_id=alice.user.pk)
    assert (await _send_frame_error(alice, conv, [bob.device_id]))["code"] == "BLOCKED"


@override_settings(DM_SEND_RATE_PER_MIN=1)
async def test_dm_send_frame_over_the_rate_limit_is_rate_limited_with_retry():
    alice, bob, conv = await pair()
    await send_as(alice, conv, [bob.device_id])
    error = await _send_frame_error(alice, conv, [bob.device_id])
    assert error["code"] == "RATE_LIMITED" and error["retry_in_seconds"] >= 1


@override_settings(DM_MAX_MESSAGE_BYTES=8)
async def test_dm_send_frame_with_an_oversized_ciphertext_is_payload_too_large():
    alice, bob, conv = await pair()
    error = await _send_frame_error(alice, conv, [bob.device_id], text="A" * 12)
    assert error["code"] == "PAYLOAD_TOO_LARGE"


async def test_dm_send_frame_to_an_unknown_conversation_is_not_found():
    alice, bob, conv = await pair()
    assert (await _send_frame_error(alice, conv + 1000, [bob.device_id]))["code"] == "NOT_FOUND"


async def test_opening_a_device_stream_records_last_seen():
    alice, bob, conv = await pair()
    long_ago = timezone.now() - timedelta(days=3)
    await database_sync_to_async(
        lambda: Device.objects.filter(pk=bob.device_id).update(last_seen_at=long_ago)
    )()
    ws = await ws_connect(bob.token)
    await next_frame(ws, "heartbeat")
    seen = await database_sync_to_async(lambda: Device.objects.get(pk=bob.device_id).last_seen_at)()
    assert seen > long_ago + timedelta(days=2)
    await ws.disconnect()


@override_settings(DM_MAX_UNACKED_PER_STREAM=3)
async def test_a_client_that_acknowledges_keeps_receiving():
    alice, bob, conv = await pair()
    ws = await ws_connect(bob.token)
    for expected in range(1, 6):
        await send_as(alice, conv, [bob.device_id])
        frame = await next_frame(ws, "dm.message")
        assert frame["cursor"] == expected
        if expected % 2 == 0:
            await ws.send_json_to({"type": "dm.ack", "up_to": frame["cursor"]})
            await next_frame(ws, "dm.acked")
    await ws.disconnect()
