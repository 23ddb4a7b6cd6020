"""group.send / group.ack / group.sync over /ws, and live fan-out to every other member device."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from groups.models import Delivery
from tests.dm.helpers import add_device, party
from tests.groups.helpers import distribute, epoch, make_group
from tests.realtime.clients import frames_until_quiet, next_frame, ws_connect

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def setup():
    alice, bob, carol = party(), party(), party()
    bob_laptop = add_device(bob.user, name="laptop")
    group = make_group(alice, bob, carol)
    return alice, bob, bob_laptop, carol, group


@database_sync_to_async
def distribute_as(sender, group, key_id="k1"):
    resp = distribute(sender, group, key_id)
    assert resp.status_code == 201, resp.content
    return resp.json()


@database_sync_to_async
def current_epoch(group):
    return epoch(group)


@database_sync_to_async
def position(group, device_id):
    return Delivery.objects.get(group=group, device_id=device_id).acked_seq


async def test_send_fans_out_live_to_every_other_member_device():
    alice, bob, bob_laptop, carol, group = await setup()
    streams = {p.device_id: await ws_connect(p.token) for p in (alice, bob, bob_laptop, carol)}

    await distribute_as(alice, group)
    for party_ in (bob, bob_laptop, carol):
        frame = await next_frame(streams[party_.device_id], "group.message")
        assert frame["proto"] == 11 and frame["seq"] == 1
        assert frame["envelope"] == {"message_type": 0, "ciphertext": "b2xt"}

    ws = streams[alice.device_id]
    await ws.send_json_to(
        {
            "type": "group.send",
            "ref": "s1",
            "group_id": str(group.pk),
            "group_epoch": await current_epoch(group),
            "sender_key_id": "k1",
            "client_message_id": "ws-1",
            "ciphertext": "bWVnb2xt",
        }
    )
    sent = await next_frame(ws, "group.sent")
    assert sent["ref"] == "s1" and sent["seq"] == 2 and sent["recipients"] == 3
    for party_ in (bob, bob_laptop, carol):
        frame = await next_frame(streams[party_.device_id], "group.message")
        assert frame["message_id"] == sent["message_id"] and frame["ciphertext"] == "bWVnb2xt"
        assert frame["proto"] == 1 and frame["sender_device_id"] == alice.device_id
    # The sender's own stream gets neither its distribution nor its message.
    assert not [f for f in await frames_until_quiet(ws, 0.3) if f["type"] == "group.message"]
    for comm in streams.values():
        await comm.disconnect()


async def test_errors_come_back_as_error_frames_with_the_ref():
    alice, bob, _laptop, _carol, group = await setup()
    ws = await ws_connect(alice.token)
    await ws.send_json_to(
        {
            "type": "group.send",
            "ref": "nokey",
            "group_id": str(group.pk),
            "group_epoch": await current_epoch(group),
            "sender_key_id": "k1",
            "client_message_id": "ws-2",
            "ciphertext": "bWVnb2xt",
        }
    )
    error = await next_frame(ws, "error")
    assert error["code"] == "SENDER_KEY_REQUIRED" and error["ref"] == "nokey"
    await ws.send_json_to(
        {
            "type": "group.send",
            "ref": "stale",
            "group_id": str(group.pk),
            "group_epoch": 1,
            "sender_key_id": "k1",
            "client_message_id": "ws-3",
            "ciphertext": "bWVnb2xt",
        }
    )
    error = await next_frame(ws, "error")
    assert error["code"] == "EPOCH_STALE" and error["ref"] == "stale"
    assert [c["user_id"] for c in error["changes"]["members_added"]] == [bob.user.pk, _carol.user.pk]
    await ws.send_json_to({"type": "group.sync", "ref": "bad", "group_id": "nope", "since": 0})
    error = await next_frame(ws, "error")
    assert error["code"] == "VALIDATION_ERROR" and error["ref"] == "bad"
    await ws.disconnect()


async def test_ack_and_sync():
    alice, bob, _laptop, carol, group = await setup()
    await distribute_as(alice, group)
    sender = await ws_connect(alice.token)
    for n in range(3):
        await sender.send_json_to(
            {
                "type": "group.send",
                "group_id": str(group.pk),
                "group_epoch": await current_epoch(group),
                "sender_key_id": "k1",
                "client_message_id": f"m{n}",
                "ciphertext": "bWVnb2xt",
            }
        )
        await next_frame(sender, "group.sent")
    await sender.disconnect()

    ws = await ws_connect(carol.token)
    replayed = [await next_frame(ws, "group.message") for _ in range(4)]  # on connect, by itself
    assert [f["seq"] for f in replayed] == [1, 2, 3, 4]
    await ws.send_json_to({"type": "group.sync", "ref": "y", "group_id": str(group.pk), "since": 0})
    frames = []
    while True:
        frame = await ws.receive_json_from(timeout=5)
        if frame["type"] == "group.synced":
            break
        if frame["type"] == "group.message":
            frames.append(frame)
    assert [f["seq"] for f in frames] == [1, 2, 3, 4]
    assert frames[0]["proto"] == 11 and frames[0]["envelope"]["ciphertext"] == "b2xt"
    assert frame == {
        "type": "group.synced",
        "ref": "y",
        "group_id": str(group.pk),
        "cursor": 4,
        "has_more": False,
    }

    await ws.send_json_to({"type": "group.ack", "ref": "a", "group_id": str(group.pk), "seq": 4})
    acked = await next_frame(ws, "group.acked")
    assert acked["acked_seq"] == 4 and acked["envelopes_acked"] == 1 and acked["ref"] == "a"
    assert await position(group, carol.device_id) == 4
    await ws.send_json_to({"type": "group.sync", "group_id": str(group.pk), "since": 4})
    synced = await next_frame(ws, "group.synced")
    assert synced["cursor"] == 4
    await ws.disconnect()
