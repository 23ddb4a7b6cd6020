"""The groups feed of a live stream (groups/streams.py): replay on connect from the device's
acknowledged position, live frames in order and once, a read of the database when the live path
dropped something, groups joined after the stream opened, and a real Redis outage."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from django.db import connection, transaction
from websockets.asyncio.client import connect

from chatsite.realtime import relay
from chatsite.realtime.names import device_group
from groups.models import PROTO_MESSAGE, Group, GroupMessage
from groups.presenters_messages import message_frame
from groups.services.members import _admit
from tests.dm.helpers import party
from tests.groups.helpers import distribute, make_group, send
from tests.live import live_daphne
from tests.realtime.clients import frames_for, next_frame, ws_connect

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def parties(n: int):
    return [party() for _ in range(n)]


@database_sync_to_async
def group_of(owner, *members):
    group = make_group(owner, *members)
    assert distribute(owner, group).status_code == 201
    return group


@database_sync_to_async
def sent_seqs(sender, group, n: int) -> list[int]:
    seqs = []
    for _ in range(n):
        resp = send(sender, group)
        assert resp.status_code == 201, resp.content
        seqs.append(resp.json()["seq"])
    return seqs


@database_sync_to_async
def store_unpublished(sender, group) -> GroupMessage:
    """A message stored as a send stores it, whose live frame the relay then loses."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE groups SET last_seq = last_seq + 1 WHERE id = %s RETURNING last_seq, group_epoch",
            [group.pk],
        )
        seq, epoch = cursor.fetchone()
        return GroupMessage.objects.create(
            group=group,
            seq=seq,
            sender_user=sender.user,
            sender_device_id=sender.device_id,
            group_epoch=epoch,
            proto=PROTO_MESSAGE,
            sender_key_id="sk1",
            client_message_id=f"lost-{seq}",
            ciphertext="bG9zdA",
        )


async def group_frames(ws, seconds: float = 0.5) -> list[dict]:
    return [f for f in await frames_for(ws, seconds) if f["type"] == "group.message"]


async def test_a_device_that_connects_later_gets_what_it_missed_in_order():
    alice, bob = await parties(2)
    group = await group_of(alice, bob)
    seqs = await sent_seqs(alice, group, 3)

    ws = await ws_connect(bob.token)
    frames = [await next_frame(ws, "group.message") for _ in range(4)]  # the key, then 3 messages

    assert [f["seq"] for f in frames] == [1, *seqs]
    assert frames[0]["proto"] == 11 and frames[0]["envelope"] is not None
    assert await group_frames(ws) == []  # nothing twice
    await ws.disconnect()


async def test_a_reconnect_starts_after_the_acknowledged_position():
    alice, bob = await parties(2)
    group = await group_of(alice, bob)
    seqs = await sent_seqs(alice, group, 3)
    resp = await database_sync_to_async(bob.client.post)(
        f"/groups/{group.pk}/ack", {"seq": seqs[1]}, format="json"
    )
    assert resp.status_code == 200

    ws = await ws_connect(bob.token)

    assert (await next_frame(ws, "group.message"))["seq"] == seqs[2]
    assert await group_frames(ws) == []
    await ws.disconnect()


async def test_live_messages_arrive_once_in_order_and_not_on_the_senders_own_stream():
    alice, bob = await parties(2)
    group = await group_of(alice, bob)
    bob_ws = await ws_connect(bob.token)
    alice_ws = await ws_connect(alice.token)
    await next_frame(bob_ws, "group.message")  # the key, replayed
    await alice_ws.send_json_to(
        {
            "type": "group.send",
            "ref": "a1",
            "group_id": str(group.pk),
            "group_epoch": (await database_sync_to_async(Group.objects.get)(pk=group.pk)).group_epoch,
            "sender_key_id": "sk1",
            "client_message_id": "live-1",
            "ciphertext": "bGl2ZQ",
        }
    )
    sent = await next_frame(alice_ws, "group.sent")
    seqs = [sent["seq"], *await sent_seqs(alice, group, 4)]

    got = [await next_frame(bob_ws, "group.message") for _ in seqs]

    assert [f["seq"] for f in got] == seqs
    assert await group_frames(bob_ws) == []
    assert await group_frames(alice_ws) == []  # the sender's own stream: nothing for its sends
    await alice_ws.disconnect()
    await bob_ws.disconnect()


async def test_a_dropped_live_frame_is_read_from_the_database_before_the_next_one():
    alice, bob = await parties(2)
    group = await group_of(alice, bob)
    ws = await ws_connect(bob.token)
    await next_frame(ws, "group.message")  # the key (seq 1)

    lost = await store_unpublished(alice, group)  # seq 2: its publish never happens
    [after] = await sent_seqs(alice, group, 1)  # seq 3: published, overtakes the gap

    frames = [await next_frame(ws, "group.message") for _ in range(2)]

    assert [f["seq"] for f in frames] == [lost.seq, after]
    assert frames[0]["message_id"] == lost.pk
    assert await group_frames(ws) == []
    await ws.disconnect()


async def test_live_frames_that_overtake_each_other_are_put_back_in_order_without_a_read():
    alice, bob = await parties(2)
    group = await group_of(alice, bob)
    ws = await ws_connect(bob.token)
    await next_frame(ws, "group.message")  # the key (seq 1)
    second, third = await store_unpublished(alice, group), await store_unpublished(alice, group)

    @database_sync_to_async
    def frame_of(message):
        # Marked, so a frame that came through the live path is told from one read back.
        return {**message_frame(GroupMessage.objects.get(pk=message.pk)), "live": True}

    for message in (third, second):  # the later commit's publish arrives first
        assert await relay.apublish_event(
            device_group(bob.device_id), await frame_of(message), source="groups"
        )

    frames = [await next_frame(ws, "group.message") for _ in range(2)]
    assert [f["seq"] for f in frames] == [second.seq, third.seq]
    assert all(f.get("live") for f in frames)  # held and released, not read from the database
    assert await group_frames(ws) == []
    await ws.disconnect()


async def test_a_group_joined_after_the_stream_opened_is_followed():
    alice, bob = await parties(2)
    group = await group_of(alice)
    ws = await ws_connect(bob.token)
    await next_frame(ws, "heartbeat")

    @database_sync_to_async
    def join():
        with transaction.atomic():
            _admit(group_id=group.pk, user_id=bob.user.pk)
        assert distribute(alice, group, "sk2").status_code == 201
        resp = send(alice, group, key_id="sk2")
        assert resp.status_code == 201
        return resp.json()["seq"]

    seq = await join()

    frames = [await next_frame(ws, "group.message") for _ in range(2)]
    assert [f["proto"] for f in frames] == [11, 1]
    assert frames[1]["seq"] == seq
    await ws.disconnect()


async def test_a_removed_member_gets_nothing_more():
    alice, bob, carol = await parties(3)
    group = await group_of(alice, bob, carol)
    ws = await ws_connect(carol.token)
    await next_frame(ws, "group.message")
    resp = await database_sync_to_async(alice.client.delete)(f"/groups/{group.pk}/members/{carol.user.pk}")
    assert resp.status_code == 204
    assert (await next_frame(ws, "group.epoch"))["group_id"] == str(group.pk)

    @database_sync_to_async
    def after_removal():
        assert distribute(alice, group, "sk2").status_code == 201
        assert send(alice, group, key_id="sk2").status_code == 201

    await after_removal()

    assert await group_frames(ws, seconds=1.0) == []
    await ws.disconnect()


async def next_live(ws, frame_type: str, timeout: float = 10) -> dict:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(decode=True), timeout))
        if frame["type"] == frame_type:
            return frame


async def test_with_redis_down_sends_are_stored_and_everything_arrives(throwaway_redis):
    # Bob's stream lives in another process (a real daphne on the same throwaway Redis), so his
    # frames depend on the relay: nothing is handed over in-process.
    alice, bob = await parties(2)
    group = await group_of(alice, bob)
    env = {
        "REDIS_URL": throwaway_redis.url,
        "WS_PING_INTERVAL_MS": "500",
        "RELAY_HEALTH_CHECK_INTERVAL_MS": "100",
        "RELAY_POLL_INTERVAL_MS": "300",
    }
    with live_daphne(env) as server:
        url = server.http.replace("http://", "ws://") + "/ws"
        async with connect(url, additional_headers={"Authorization": f"Bearer {bob.token}"}) as ws:
            assert (await next_live(ws, "group.message"))["proto"] == 11  # the key, replayed

            throwaway_redis.stop()
            lagging = await next_live(ws, "heartbeat")
            while not lagging["relay_lag"]:
                lagging = await next_live(ws, "heartbeat")
            # Stored while Redis is down (the rate limit falls back to the process); their
            # publishes are lost; the stream, told by its heartbeat, reads the database.
            seqs = await sent_seqs(alice, group, 3)
            during = [await next_live(ws, "group.message") for _ in seqs]

            throwaway_redis.start()
            recovered = await next_live(ws, "heartbeat")
            while recovered["relay_lag"]:
                recovered = await next_live(ws, "heartbeat")
            after = await sent_seqs(alice, group, 2)
            live = [await next_live(ws, "group.message", timeout=3) for _ in after]

    assert [f["seq"] for f in during] == seqs
    assert [f["seq"] for f in live] == after
