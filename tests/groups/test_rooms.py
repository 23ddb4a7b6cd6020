"""Ephemeral relay rooms (groups/rooms.py, groups/room_frames.py, docs/rooms.md): state in Redis
only, with a TTL; messages relayed to the other members' connections in any process and stored
nowhere."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets

import pytest
import redis
import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection
from websockets.asyncio.client import connect

from chatsite.realtime.limits import connections
from chatsite.realtime.names import room_group
from groups import rooms
from tests.live import live_daphne
from tests.realtime.clients import frames_until_quiet, new_user_and_token, next_frame, ws_connect

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 5


@pytest.fixture(autouse=True)
def _no_leaked_connection_slots():
    """As in tests/realtime/conftest.py: every test gives back the connection slots it took."""
    yield
    leaked = (connections.total, dict(connections.per_ip))
    connections.total = 0
    connections.per_ip.clear()
    assert leaked == (0, {}), f"connection slots not released: {leaked}"


def sync_redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def room_keys(room_id: str) -> list[str]:
    return [rooms.meta_key(room_id), rooms.members_key(room_id)]


async def connected(**kwargs):
    _user, token = await new_user_and_token()
    ws = await ws_connect(token, **kwargs)
    hello = await next_frame(ws, "hello")
    await next_frame(ws, "heartbeat")
    return ws, hello["user_id"]


async def call(ws, frame: dict, reply: str) -> dict:
    """Send a frame with a fresh ref; the reply (or error) echoing that ref."""
    ref = secrets.token_hex(4)
    await ws.send_json_to({**frame, "ref": ref})
    while True:
        got = await ws.receive_json_from(timeout=TIMEOUT)
        if got.get("ref") == ref:
            assert got["type"] == reply, got
            return got


async def create(ws) -> str:
    created = await call(ws, {"type": "room.create"}, "room.created")
    return created["room_id"]


async def join(ws, room_id: str) -> dict:
    return await call(ws, {"type": "room.join", "room_id": room_id}, "room.joined")


async def send(ws, room_id: str, ciphertext: str) -> dict:
    return await call(ws, {"type": "room.send", "room_id": room_id, "ciphertext": ciphertext}, "room.sent")


def no_frame_of(frames: list[dict], frame_type: str) -> bool:
    return all(f["type"] != frame_type for f in frames)


# --- create, join, relay ----------------------------------------------------------------------


async def test_two_users_create_join_and_relay_without_an_echo_to_the_sender():
    alice, alice_id = await connected()
    bob, bob_id = await connected()

    room_id = await create(alice)
    assert len(room_id) == 24 and room_id != await create(bob)  # token_urlsafe(18), unguessable
    joined = await join(bob, room_id)
    assert joined["room_id"] == room_id and joined["members"] == sorted([alice_id, bob_id])

    assert await send(alice, room_id, "aGVsbG8gYm9i") == {"type": "room.sent", "room_id": room_id, "ref": ANY}
    message = await next_frame(bob, "room.message")
    assert message == {
        "type": "room.message",
        "room_id": room_id,
        "from_user_id": alice_id,
        "ciphertext": "aGVsbG8gYm9i",
    }
    assert no_frame_of(await frames_until_quiet(alice, 0.3), "room.message")  # no echo

    await send(bob, room_id, "aGkgYWxpY2U=")
    assert (await next_frame(alice, "room.message"))["from_user_id"] == bob_id
    assert no_frame_of(await frames_until_quiet(bob, 0.3), "room.message")
    await alice.disconnect()
    await bob.disconnect()


class _Any:
    def __eq__(self, other) -> bool:
        return True


ANY = _Any()


async def test_three_members_each_message_reaches_the_two_others_only():
    (a, a_id), (b, b_id), (c, c_id) = [await connected() for _ in range(3)]
    room_id = await create(a)
    await join(b, room_id)
    assert (await join(c, room_id))["members"] == sorted([a_id, b_id, c_id])

    for sender, sender_id, others in ((a, a_id, (b, c)), (b, b_id, (a, c)), (c, c_id, (a, b))):
        text = secrets.token_urlsafe(12)
        await send(sender, room_id, text)
        for other in others:
            got = await next_frame(other, "room.message")
            assert (got["from_user_id"], got["ciphertext"]) == (sender_id, text)
        assert no_frame_of(await frames_until_quiet(sender, 0.2), "room.message")
    for ws in (a, b, c):
        await ws.disconnect()


async def test_a_non_member_cannot_send_and_an_unknown_room_cannot_be_joined():
    alice, _ = await connected()
    mallory, _ = await connected()
    room_id = await create(alice)

    refused = await call(mallory, {"type": "room.send", "room_id": room_id, "ciphertext": "eA=="}, "error")
    assert refused["code"] == "NOT_MEMBER"
    unknown = await call(mallory, {"type": "room.join", "room_id": secrets.token_urlsafe(18)}, "error")
    assert unknown["code"] == "NOT_FOUND"
    bad = await call(mallory, {"type": "room.join", "room_id": "../../etc"}, "error")
    assert bad["code"] == "VALIDATION_ERROR"
    assert no_frame_of(await frames_until_quiet(alice, 0.3), "room.message")
    await alice.disconnect()
    await mallory.disconnect()


async def test_ciphertext_must_be_base64_and_within_room_max_message_bytes(settings):
    settings.ROOM_MAX_MESSAGE_BYTES = 16
    alice, _ = await connected()
    room_id = await create(alice)
    frame = {"type": "room.send", "room_id": room_id}

    too_big = await call(alice, {**frame, "ciphertext": "A" * 17}, "error")
    assert too_big["code"] == "PAYLOAD_TOO_LARGE" and too_big["limit"] == 16
    assert (await call(alice, {**frame, "ciphertext": "<script>"}, "error"))["code"] == "VALIDATION_ERROR"
    assert (await call(alice, {**frame, "ciphertext": {"x": 1}}, "error"))["code"] == "VALIDATION_ERROR"
    await send(alice, room_id, "A" * 16)
    await alice.disconnect()


# --- cap, leave, TTL ----------------------------------------------------------------------------


async def test_member_cap_refuses_the_join_past_it(settings):
    settings.ROOM_MAX_MEMBERS = 2
    (a, _), (b, _), (c, _) = [await connected() for _ in range(3)]
    room_id = await create(a)
    await join(b, room_id)

    full = await call(c, {"type": "room.join", "room_id": room_id}, "error")
    assert full["code"] == "GROUP_FULL" and full["limit"] == 2
    await join(b, room_id)  # joining again is a no-op, not a second seat
    await call(b, {"type": "room.leave", "room_id": room_id}, "room.left")
    await join(c, room_id)  # a seat came free
    for ws in (a, b, c):
        await ws.disconnect()


async def test_the_cap_holds_under_concurrent_joins(settings):
    settings.ROOM_MAX_MEMBERS = 5
    room_id = await rooms.room_create(rooms.Member(1, "creator"), client_ip="10.0.0.1")
    outcomes = await asyncio.gather(
        *(rooms.room_join(room_id, rooms.Member(i, f"ch{i}")) for i in range(2, 32)),
        return_exceptions=True,
    )
    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert len(outcomes) - len(refused) == 4
    assert {e.code for e in refused} == {"GROUP_FULL"}
    assert sync_redis().hlen(rooms.members_key(room_id)) == 5


async def test_leaving_and_the_last_leave_deletes_the_room():
    alice, _ = await connected()
    bob, bob_id = await connected()
    room_id = await create(alice)
    await join(bob, room_id)
    r = sync_redis()

    assert await call(alice, {"type": "room.leave", "room_id": room_id}, "room.left") == {
        "type": "room.left",
        "room_id": room_id,
        "ref": ANY,
    }
    assert await rooms.room_members(room_id) == [bob_id]
    # Alice left: she no longer gets the room's messages, and cannot send to it.
    refused = await call(alice, {"type": "room.send", "room_id": room_id, "ciphertext": "eA=="}, "error")
    assert refused["code"] == "NOT_MEMBER"

    await call(bob, {"type": "room.leave", "room_id": room_id}, "room.left")
    assert r.exists(*room_keys(room_id)) == 0
    gone = await call(alice, {"type": "room.join", "room_id": room_id}, "error")
    assert gone["code"] == "NOT_FOUND"
    await alice.disconnect()
    await bob.disconnect()


async def test_a_closed_connection_leaves_its_rooms_and_the_last_one_deletes_them():
    alice, _ = await connected()
    bob, bob_id = await connected()
    first, second = await create(alice), await create(alice)
    await join(bob, first)

    await alice.disconnect()
    await asyncio.sleep(0.3)  # the consumer's cleanup runs as the socket closes
    r = sync_redis()
    assert r.exists(*room_keys(second)) == 0  # alice was its only member
    assert await rooms.room_members(first) == [bob_id]

    await bob.disconnect()
    await asyncio.sleep(0.3)
    assert r.exists(*room_keys(first)) == 0
    assert r.keys("room:*") == []


async def test_every_room_key_has_the_idle_ttl_and_activity_refreshes_it(settings):
    settings.ROOM_IDLE_TTL_S = 120
    alice, _ = await connected()
    bob, _ = await connected()
    room_id = await create(alice)
    r = sync_redis()
    for key in room_keys(room_id):
        assert 0 < r.ttl(key) <= 120

    for key in room_keys(room_id):
        r.expire(key, 5)  # as if it had idled for nearly two minutes
    await join(bob, room_id)
    assert all(r.ttl(key) > 100 for key in room_keys(room_id))
    for key in room_keys(room_id):
        r.expire(key, 5)
    await send(alice, room_id, "eA==")
    assert all(r.ttl(key) > 100 for key in room_keys(room_id))
    assert r.ttl(rooms.members_key(room_id)) != -1  # never a key without expiry
    await alice.disconnect()
    await bob.disconnect()


async def test_an_idled_out_room_is_gone():
    alice, _ = await connected()
    bob, _ = await connected()
    room_id = await create(alice)
    sync_redis().delete(*room_keys(room_id))  # what the TTL does

    assert (await call(bob, {"type": "room.join", "room_id": room_id}, "error"))["code"] == "NOT_FOUND"
    refused = await call(alice, {"type": "room.send", "room_id": room_id, "ciphertext": "eA=="}, "error")
    assert refused["code"] == "NOT_MEMBER"
    await alice.disconnect()
    await bob.disconnect()


# --- limits, flag, failures ----------------------------------------------------------------------


async def test_room_creates_are_limited_per_client_address(settings):
    settings.MAX_ROOM_CREATES_PER_IP_PER_MIN = 2
    alice, _ = await connected(client_ip="203.0.113.7")
    bob, _ = await connected(client_ip="203.0.113.7")  # another user, the same address
    carol, _ = await connected(client_ip="198.51.100.9")

    await create(alice)
    await create(bob)
    limited = await call(alice, {"type": "room.create"}, "error")
    assert limited["code"] == "RATE_LIMITED" and limited["retry_in_seconds"] >= 1
    assert (await call(bob, {"type": "room.create"}, "error"))["code"] == "RATE_LIMITED"
    await create(carol)  # another address has its own budget
    for ws in (alice, bob, carol):
        await ws.disconnect()


async def test_the_per_connection_message_budget_applies_to_room_frames(settings):
    settings.MAX_MSGS_PER_10S = 5
    alice, _ = await connected()
    room_id = await create(alice)
    for _ in range(5):  # with the create: the 6th frame in 10 s
        await alice.send_json_to({"type": "room.send", "room_id": room_id, "ciphertext": "eA=="})
    error = await next_frame(alice, "error")
    assert error["code"] == "RATE_LIMITED"
    closing = await next_frame(alice, "closing")
    assert closing["code"] == 4429
    await alice.disconnect()


async def test_groups_flag_off_refuses_every_room_frame(settings):
    alice, _ = await connected()
    room_id = await create(alice)
    settings.GROUPS_ENABLED = False
    for frame in (
        {"type": "room.create"},
        {"type": "room.join", "room_id": room_id},
        {"type": "room.send", "room_id": room_id, "ciphertext": "eA=="},
        {"type": "room.leave", "room_id": room_id},
    ):
        refused = await call(alice, frame, "error")
        assert refused["code"] == "FEATURE_DISABLED" and refused["feature"] == "groups"
    await alice.disconnect()


async def test_redis_down_answers_service_unavailable_and_stores_nothing(monkeypatch):
    alice, _ = await connected()
    room_id = await create(alice)
    dead = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    monkeypatch.setattr(rooms, "get_async_redis", lambda: dead)

    for frame in (
        {"type": "room.create"},
        {"type": "room.join", "room_id": room_id},
        {"type": "room.send", "room_id": room_id, "ciphertext": "eA=="},
    ):
        assert (await call(alice, frame, "error"))["code"] == "SERVICE_UNAVAILABLE"
    # Nothing was written anywhere: the one room is as it was, no new one appeared.
    assert sorted(sync_redis().keys("room:*")) == sorted(k.encode() for k in room_keys(room_id))
    await alice.disconnect()


# --- across processes -----------------------------------------------------------------------------


@pytest.fixture
def room_daphne():
    with live_daphne({"WS_PING_INTERVAL_MS": "60000", "WS_PING_TIMEOUT_MS": "60000"}) as server:
        yield server.ws + "/ws"


async def next_matching(ws, frame_type: str, timeout: float = TIMEOUT) -> dict:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(decode=True), timeout))
        if frame["type"] == frame_type:
            return frame


async def test_a_member_on_another_process_gets_the_message_and_answers(room_daphne):
    alice, alice_id = await connected()
    _bob, bob_token = await new_user_and_token()
    room_id = await create(alice)
    async with connect(room_daphne, additional_headers={"Authorization": f"Bearer {bob_token}"}) as bob:
        bob_id = (await next_matching(bob, "hello"))["user_id"]
        await bob.send(json.dumps({"type": "room.join", "room_id": room_id, "ref": 1}))
        joined = await next_matching(bob, "room.joined")
        assert joined["members"] == sorted([alice_id, bob_id])

        await send(alice, room_id, "ZnJvbSBwcm9jZXNzIDE=")
        got = await next_matching(bob, "room.message")
        assert got == {
            "type": "room.message",
            "room_id": room_id,
            "from_user_id": alice_id,
            "ciphertext": "ZnJvbSBwcm9jZXNzIDE=",
        }

        await bob.send(json.dumps({"type": "room.send", "room_id": room_id, "ciphertext": "cHJvY2VzcyAy"}))
        assert (await next_matching(bob, "room.sent"))["room_id"] == room_id
        back = await next_frame(alice, "room.message")
        assert (back["from_user_id"], back["ciphertext"]) == (bob_id, "cHJvY2VzcyAy")
    # Bob's connection closed in the other process: its cleanup left the room there.
    for _ in range(50):
        if await rooms.room_members(room_id) == [alice_id]:
            break
        await asyncio.sleep(0.1)
    assert await rooms.room_members(room_id) == [alice_id]
    await alice.disconnect()


# --- nothing in PostgreSQL ------------------------------------------------------------------------

_TEXT_TYPES = ("text", "character varying", "character", "json", "jsonb", "bytea")


def _public_columns() -> list[tuple[str, str, str]]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c "
            "JOIN information_schema.tables t ON t.table_schema = c.table_schema "
            "AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE' "
            "WHERE c.table_schema = 'public' AND c.data_type = ANY(%s)",
            [list(_TEXT_TYPES)],
        )
        return cur.fetchall()


def _row_counts() -> dict[str, int]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
        tables = [row[0] for row in cur.fetchall()]
        counts = {}
        for table in tables:
            cur.execute(f'SELECT count(*) FROM "{table}"')  # noqa: S608 (names from the catalog)
            counts[table] = cur.fetchone()[0]
        return counts


def _tables_holding(needle: str) -> list[str]:
    found = []
    with connection.cursor() as cur:
        for table, column, data_type in _public_columns():
            if data_type == "bytea":
                condition = f"position(convert_to(%s, 'UTF8') in \"{column}\") > 0"
            else:
                condition = f'strpos("{column}"::text, %s) > 0'
            cur.execute(f'SELECT count(*) FROM "{table}" WHERE {condition}', [needle])  # noqa: S608
            if cur.fetchone()[0]:
                found.append(f"{table}.{column}")
    return found


async def test_postgresql_holds_no_trace_of_a_rooms_messages(caplog):
    caplog.set_level(logging.DEBUG)
    alice, _ = await connected()
    bob, _ = await connected()
    await asyncio.sleep(0.2)  # past the streams' opening bookkeeping
    before = await database_sync_to_async(_row_counts)()
    assert len(before) > 10

    ciphertext = "Um9vbVNlY3JldA" + secrets.token_hex(16)  # distinctive, base64 alphabet
    room_id = await create(alice)
    await join(bob, room_id)
    await send(alice, room_id, ciphertext)
    assert (await next_frame(bob, "room.message"))["ciphertext"] == ciphertext
    await call(bob, {"type": "room.leave", "room_id": room_id}, "room.left")
    await call(alice, {"type": "room.leave", "room_id": room_id}, "room.left")

    after = await database_sync_to_async(_row_counts)()
    assert {t: (before[t], after[t]) for t in before if before[t] != after.get(t)} == {}
    columns = await database_sync_to_async(_public_columns)()
    assert len(columns) > 20
    assert await database_sync_to_async(_tables_holding)(ciphertext) == []
    assert await database_sync_to_async(_tables_holding)(room_id) == []
    assert ciphertext not in caplog.text  # never logged either
    assert sync_redis().keys("room:*") == []  # and gone from Redis with its last member
    r = sync_redis()
    assert not any(ciphertext.encode() in (r.dump(k) or b"") for k in r.keys("*"))  # no queued copy
    await alice.disconnect()
    await bob.disconnect()


def test_room_group_names_are_valid_channel_layer_group_names():
    from channels.layers import BaseChannelLayer

    layer = BaseChannelLayer()
    room_id = secrets.token_urlsafe(18)
    assert layer.require_valid_group_name(room_group(room_id))
