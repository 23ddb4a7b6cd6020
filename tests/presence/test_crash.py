"""Presence never sticks online after a crash: a real daphne is killed (no cleanup runs), its
stream's Redis key lapses after two heartbeats, and the sweep clears the user. Also /dm/sse marks
its device online like /ws."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from channels.db import database_sync_to_async
from websockets.asyncio.client import connect

from presence.models import UserPresence
from presence.tasks import sweep_presence
from tests.conftest import login
from tests.dm.helpers import party
from tests.factories import UserFactory
from tests.live import live_daphne
from tests.presence.test_streams import _conn_keys, _row, _wait_for, _wait_online
from tests.realtime.clients import SseClient

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.live_server_process
async def test_a_killed_server_leaves_no_one_online_after_the_sweep(redis_required):
    user = await database_sync_to_async(UserFactory)()
    token = await database_sync_to_async(login)(user)
    with live_daphne({"PRESENCE_HEARTBEAT_S": "1"}) as server:
        ws = await connect(
            server.http.replace("http://", "ws://") + "/ws",
            additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=5,
        )
        assert json.loads(await ws.recv(decode=True))["type"] == "hello"

        async def online():
            row = await _row(user.pk)
            return row is not None and row.device_online

        await _wait_for(online, timeout=5)

        server.proc.kill()  # no finally, no cleanup hook
        server.proc.wait(timeout=5)
        assert (await _row(user.pk)).device_online is True  # stuck, until ...
        deadline = time.monotonic() + 5
        while _conn_keys(user.pk) and time.monotonic() < deadline:  # ... its key lapses (2 s)
            await asyncio.sleep(0.2)
        assert _conn_keys(user.pk) == []

        assert await database_sync_to_async(sweep_presence)() == 1
        assert (await _row(user.pk)).device_online is False
        await ws.close()


async def test_dm_sse_marks_online_and_offline(redis_required):
    bob = await database_sync_to_async(party)()
    user = bob.user

    async with SseClient("/dm/sse", bob.token) as sse:
        await sse.next_event("heartbeat")
        await _wait_online(user.pk)
        assert len(_conn_keys(user.pk)) == 1

    async def offline():  # the end-of-stream work runs in a task of its own (presence/streams.py)
        row = await database_sync_to_async(UserPresence.objects.get)(user_id=user.pk)
        return row.device_online is False

    await _wait_for(offline)
    assert _conn_keys(user.pk) == []
