"""chatsite.realtime.live_connections: every live stream's user, transport, address and user agent
in Redis (bounded, expiring), gone when the stream ends; what the connection-storm report reads."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from chatsite.api.redis import get_redis
from chatsite.realtime import live_connections
from tests.realtime.clients import Communicator, application, new_user_and_token

pytestmark = pytest.mark.django_db(transaction=True)


async def records(n: int) -> list[dict]:
    for _ in range(100):  # written by a task of the stream, just after its first heartbeat
        found = await database_sync_to_async(live_connections.snapshot)()
        if len(found) == n:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"expected {n} records, have {found}")


async def connect(token: str, agent: bytes) -> Communicator:
    comm = Communicator(
        application, "/ws", headers=[(b"authorization", f"Bearer {token}".encode()), (b"user-agent", agent)]
    )
    comm.scope["client"] = ("198.51.100.7", 41000)
    assert (await comm.connect(timeout=5))[0]
    return comm


async def test_a_stream_records_its_address_and_user_agent_with_a_ttl(redis_required, settings):
    settings.REALTIME_USER_AGENT_MAX_CHARS = 12
    user, token = await new_user_and_token()
    comm = await connect(token, b"MobileApp/1.0.0 (an unusually long build string)")

    [record] = await records(1)

    assert (record["user_id"], record["transport"], record["ip"]) == (user.pk, "ws", "198.51.100.7")
    assert record["user_agent"] == "MobileApp/1."  # cut to REALTIME_USER_AGENT_MAX_CHARS
    [key] = list(get_redis().scan_iter(match=f"{live_connections.PREFIX}*"))
    assert 0 < get_redis().ttl(key) <= settings.REALTIME_CONNECTION_RECORD_TTL_S
    await comm.disconnect()


async def test_the_record_goes_when_the_stream_ends(redis_required):
    _, token = await new_user_and_token()
    comm = await connect(token, b"Browser/1")
    await records(1)

    await comm.disconnect()

    assert await database_sync_to_async(live_connections.snapshot)() == []


async def test_the_record_is_refreshed_at_each_heartbeat(redis_required, settings):
    settings.WS_PING_INTERVAL_MS = 200
    settings.REALTIME_CONNECTION_RECORD_TTL_S = 1
    _, token = await new_user_and_token()
    comm = await connect(token, b"Browser/1")
    await records(1)

    for _ in range(6):  # 1.5 s: past the TTL, so only refreshes keep it
        await comm.send_json_to({"type": "ping", "ref": 1})
        await asyncio.sleep(0.25)

    assert len(await database_sync_to_async(live_connections.snapshot)()) == 1
    await comm.disconnect()


async def test_a_snapshot_reads_at_most_the_configured_number_of_records(redis_required, settings):
    settings.REALTIME_CONNECTION_SNAPSHOT_MAX_RECORDS = 2
    settings.REALTIME_CONNECTION_SCAN_BATCH = 1  # one key per SCAN page and per pipeline
    for n in range(3):
        get_redis().hset(f"{live_connections.PREFIX}test-{n}", mapping={"user_id": n, "since": 0})

    found = await database_sync_to_async(live_connections.snapshot)()

    assert len(found) == 2


def test_a_record_ttl_not_above_the_heartbeat_interval_fails_the_system_check(settings):
    from django.core import checks

    settings.WS_PING_INTERVAL_MS = 25000
    settings.REALTIME_CONNECTION_RECORD_TTL_S = 25
    failing = [m.id for m in checks.run_checks()]
    settings.REALTIME_CONNECTION_RECORD_TTL_S = 26
    passing = [m.id for m in checks.run_checks()]

    assert "realtime.E001" in failing
    assert "realtime.E001" not in passing
