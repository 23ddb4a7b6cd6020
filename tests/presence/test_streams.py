"""Presence on live streams: online on connect, offline on disconnect, a steady heartbeat writes
nothing to PostgreSQL, the batch flush runs at most once per interval, the sweep clears a user whose
stream died without cleanup, and transitions reach only the contacts allowed to see them, once."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from channels.db import database_sync_to_async
from django.db import connection

from chatsite.accounts.models import Block, Contact
from chatsite.api.redis import get_redis
from presence import liveness, services
from presence.metrics import PRESENCE_HEARTBEATS
from presence.models import UserPresence
from presence.tasks import flush_last_seen, sweep_presence
from tests.realtime.clients import frames_for, new_user_and_token, open_ws

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def _row(user_id: int) -> UserPresence | None:
    return UserPresence.objects.filter(user_id=user_id).first()


@database_sync_to_async
def _xmin(user_id: int) -> str:
    """The row version: any UPDATE of the row changes it."""
    with connection.cursor() as cur:
        cur.execute("SELECT xmin::text FROM user_presence WHERE user_id = %s", [user_id])
        return cur.fetchone()[0]


async def _wait_online(user_id: int) -> None:
    """The stream marks its user online in a task of its own, just after the first heartbeat."""

    async def online():
        row = await _row(user_id)
        return row is not None and row.device_online and bool(_conn_keys(user_id))

    await _wait_for(online)


async def _wait_pushed(user_id: int, state: str) -> None:
    async def pushed():
        return get_redis().get(liveness.pushed_key(user_id)) == state.encode()

    await _wait_for(pushed)


def _conn_keys(user_id: int) -> list[bytes]:
    return list(get_redis().scan_iter(match=f"presence:{user_id}:*"))


async def _wait_for(predicate, timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_a_stream_marks_its_user_online_and_offline_on_disconnect(redis_required):
    user, token = await new_user_and_token()

    comm, _ = await open_ws(token)
    await _wait_online(user.pk)

    row = await _row(user.pk)
    assert row.device_online is True and row.last_seen_at is not None
    keys = _conn_keys(user.pk)
    assert len(keys) == 1 and 0 < get_redis().ttl(keys[0]) <= liveness.ttl_s()

    await comm.disconnect()

    async def offline():
        row = await _row(user.pk)
        return row.device_online is False

    await _wait_for(offline)
    assert _conn_keys(user.pk) == []
    assert (await _row(user.pk)).last_seen_at >= row.last_seen_at


async def test_a_steady_heartbeat_writes_nothing_to_postgresql(settings, redis_required):
    settings.PRESENCE_HEARTBEAT_S = 1
    user, token = await new_user_and_token()
    comm, _ = await open_ws(token)
    await _wait_online(user.pk)
    before = await _xmin(user.pk)
    beats = PRESENCE_HEARTBEATS.labels(store="redis")._value.get()

    await frames_for(comm, 3.5)

    assert PRESENCE_HEARTBEATS.labels(store="redis")._value.get() - beats >= 2
    assert await _xmin(user.pk) == before
    assert get_redis().zscore(liveness.SEEN, str(user.pk)) is not None
    await comm.disconnect()


async def test_the_last_seen_flush_writes_a_batch_at_most_once_per_interval(settings, redis_required):
    settings.PRESENCE_FLUSH_INTERVAL_S = 60
    (a, _), (b, _) = await new_user_and_token(), await new_user_and_token()
    for user in (a, b):
        await database_sync_to_async(services.mark_online)(user_id=user.pk)
        await liveness.abeat(user.pk, "phone")
    versions = [await _xmin(a.pk), await _xmin(b.pk)]

    assert await database_sync_to_async(flush_last_seen)() == 2
    flushed = [await _xmin(a.pk), await _xmin(b.pk)]
    await liveness.abeat(a.pk, "phone")
    assert await database_sync_to_async(flush_last_seen)() == 0  # within the interval: nothing

    assert flushed != versions and all(x != y for x, y in zip(flushed, versions, strict=True))
    assert [await _xmin(a.pk), await _xmin(b.pk)] == flushed
    get_redis().delete(liveness.FLUSH_GATE)  # the interval has passed
    assert await database_sync_to_async(flush_last_seen)() == 1


async def test_the_sweep_clears_a_user_whose_liveness_expired(redis_required):
    user, token = await new_user_and_token()
    comm, _ = await open_ws(token)
    await _wait_online(user.pk)
    assert await database_sync_to_async(sweep_presence)() == 0  # alive: left alone

    for key in _conn_keys(user.pk):  # the process died: its key is gone (or its TTL lapsed)
        get_redis().delete(key)
    assert await database_sync_to_async(sweep_presence)() == 1

    assert (await _row(user.pk)).device_online is False
    await comm.disconnect()


async def test_without_redis_liveness_the_sweep_falls_back_to_last_seen(settings, monkeypatch):
    settings.PRESENCE_HEARTBEAT_S = 25
    (fresh, _), (stale, _) = await new_user_and_token(), await new_user_and_token()

    @database_sync_to_async
    def setup():
        from datetime import timedelta

        from django.utils import timezone

        services.mark_online(user_id=fresh.pk)
        services.mark_online(user_id=stale.pk)
        UserPresence.objects.filter(user_id=stale.pk).update(
            last_seen_at=timezone.now() - timedelta(seconds=51)
        )

    await setup()

    def down(_ids):
        raise OSError("redis down")

    monkeypatch.setattr(liveness, "live_users", down)
    assert await database_sync_to_async(services.sweep_stale)() == [stale.pk]
    assert (await _row(fresh.pk)).device_online is True


@database_sync_to_async
def _setup_watchers(bob, alice, carol, dave, *, bob_shares="contacts"):
    services.update_privacy(user_id=bob.pk, changes={"share_online": bob_shares})
    Contact.objects.create(owner=alice, contact=bob)  # alice watches bob ...
    Contact.objects.create(owner=bob, contact=alice)  # ... and bob lists alice
    Contact.objects.create(owner=carol, contact=bob)  # carol watches bob; bob does not list her
    Contact.objects.create(owner=dave, contact=bob)
    Contact.objects.create(owner=bob, contact=dave)
    Block.objects.create(blocker=bob, blocked=dave)  # dave is blocked


def _presence(frames):
    return [f for f in frames if f["type"] == "presence.changed"]


async def test_transitions_are_pushed_once_and_only_to_allowed_contacts(settings, redis_required):
    settings.PRESENCE_OFFLINE_GRACE_S = 0
    (bob, bob_token), (alice, a_token), (carol, c_token), (dave, d_token) = [
        await new_user_and_token() for _ in range(4)
    ]
    await _setup_watchers(bob, alice, carol, dave)
    alice_ws, _ = await open_ws(a_token)
    carol_ws, _ = await open_ws(c_token)
    dave_ws, _ = await open_ws(d_token)

    bob_phone, _ = await open_ws(bob_token)
    seen_online = _presence(await frames_for(alice_ws, 0.7))
    await bob_phone.disconnect()
    seen_offline = _presence(await frames_for(alice_ws, 1.0))

    assert [(f["user_id"], f["online"]) for f in seen_online] == [(bob.pk, True)]
    assert [(f["user_id"], f["online"]) for f in seen_offline] == [(bob.pk, False)]
    assert seen_offline[0]["last_seen_at"] is not None
    assert _presence(await frames_for(carol_ws, 0.2)) == []
    assert _presence(await frames_for(dave_ws, 0.2)) == []
    for comm in (alice_ws, carol_ws, dave_ws):
        await comm.disconnect()


async def test_a_flap_within_the_grace_period_pushes_nothing(settings, redis_required):
    settings.PRESENCE_OFFLINE_GRACE_S = 1
    (bob, bob_token), (alice, a_token), (carol, _), (dave, _) = [await new_user_and_token() for _ in range(4)]
    await _setup_watchers(bob, alice, carol, dave)
    first, _ = await open_ws(bob_token)
    await _wait_pushed(bob.pk, "online")  # bob's online push done before alice listens
    alice_ws, _ = await open_ws(a_token)

    await first.disconnect()
    second, _ = await open_ws(bob_token)  # back within the grace period
    frames = await frames_for(alice_ws, 1.5)

    assert _presence(frames) == []
    await second.disconnect()
    await alice_ws.disconnect()


async def test_a_user_sharing_online_with_nobody_is_never_pushed(settings, redis_required):
    settings.PRESENCE_OFFLINE_GRACE_S = 0
    (bob, bob_token), (alice, a_token), (carol, _), (dave, _) = [await new_user_and_token() for _ in range(4)]
    await _setup_watchers(bob, alice, carol, dave, bob_shares="nobody")
    alice_ws, _ = await open_ws(a_token)

    bob_ws, _ = await open_ws(bob_token)
    await bob_ws.disconnect()

    assert _presence(await frames_for(alice_ws, 0.8)) == []
    await alice_ws.disconnect()


async def test_with_presence_disabled_streams_do_not_mark_online(settings, redis_required):
    settings.PRESENCE_ENABLED = False
    user, token = await new_user_and_token()

    comm, _ = await open_ws(token)
    await frames_for(comm, 0.3)

    assert await _row(user.pk) is None and _conn_keys(user.pk) == []
    await comm.disconnect()


async def test_a_live_stream_swept_by_mistake_is_online_again_at_its_next_heartbeat(settings, redis_required):
    settings.PRESENCE_HEARTBEAT_S = 1
    user, token = await new_user_and_token()
    comm, _ = await open_ws(token)
    await _wait_online(user.pk)
    for key in _conn_keys(user.pk):  # e.g. Redis restarted empty
        get_redis().delete(key)
    assert await database_sync_to_async(sweep_presence)() == 1

    await frames_for(comm, 1.6)

    assert (await _row(user.pk)).device_online is True and len(_conn_keys(user.pk)) == 1
    await comm.disconnect()


async def test_with_redis_down_presence_degrades_to_the_database(settings, monkeypatch):
    settings.PRESENCE_HEARTBEAT_S = 1

    async def down(*_args):
        raise OSError("redis down")

    monkeypatch.setattr(liveness, "abeat", down)
    monkeypatch.setattr(liveness, "aend", down)
    user, token = await new_user_and_token()
    beats = PRESENCE_HEARTBEATS.labels(store="database")._value.get()

    comm, _ = await open_ws(token)

    async def online():
        row = await _row(user.pk)
        return row is not None and row.device_online

    await _wait_for(online)
    before = await _xmin(user.pk)
    await frames_for(comm, 1.6)

    assert PRESENCE_HEARTBEATS.labels(store="database")._value.get() > beats
    assert await _xmin(user.pk) != before  # the heartbeat itself was written
    await comm.disconnect()

    async def offline():
        return (await _row(user.pk)).device_online is False

    await _wait_for(offline)


async def test_the_offline_push_survives_a_database_write_slower_than_the_cleanup_deadline(
    settings, redis_required
):
    """The gateway gives a cleanup hook 2 s; presence's end-of-stream work runs detached from it,
    so a slow offline write (here: bob's row locked by another real connection for longer) still
    ends in device_online cleared and the offline push."""
    settings.PRESENCE_OFFLINE_GRACE_S = 0
    (bob, bob_token), (alice, a_token), (carol, _), (dave, _) = [await new_user_and_token() for _ in range(4)]
    await _setup_watchers(bob, alice, carol, dave)
    alice_ws, _ = await open_ws(a_token)
    bob_ws, _ = await open_ws(bob_token)
    await _wait_pushed(bob.pk, "online")
    await frames_for(alice_ws, 0.3)

    params = connection.get_connection_params()
    locker = await psycopg.AsyncConnection.connect(
        **{k: v for k, v in params.items() if k in ("host", "port", "user", "dbname", "password")}
    )
    try:
        await locker.execute("BEGIN")
        await locker.execute("SELECT 1 FROM user_presence WHERE user_id = %s FOR UPDATE", [bob.pk])
        await bob_ws.disconnect()
        await asyncio.sleep(2.5)  # past the gateway's cleanup deadline
        await locker.execute("COMMIT")
    finally:
        await locker.close()
    seen = _presence(await frames_for(alice_ws, 1.5))

    assert [(f["user_id"], f["online"]) for f in seen] == [(bob.pk, False)]
    assert (await _row(bob.pk)).device_online is False
    await alice_ws.disconnect()
