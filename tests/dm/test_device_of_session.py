"""The device a session acts as, decided by one selector for every transport: a session without a
device is 409 DEVICE_REQUIRED, one whose device was revoked or no longer exists is 409
DEVICE_REVOKED (issue 12)."""

from __future__ import annotations

import uuid

import pytest
from channels.db import database_sync_to_async

from chatsite.accounts.models import Session
from tests.conftest import assert_api_error, client_for, login
from tests.dm.helpers import party
from tests.factories import UserFactory
from tests.realtime.clients import next_frame, ws_connect

pytestmark = pytest.mark.django_db(transaction=True)


def party_whose_device_is_gone():
    bob = party()
    Session.objects.filter(device_id=bob.device_id).update(device_id=uuid.uuid4())
    return bob


def test_rest_with_a_session_whose_device_no_longer_exists_is_device_revoked():
    bob = party_whose_device_is_gone()
    assert_api_error(bob.client.get("/dm/messages"), code="DEVICE_REVOKED", status=409)


def test_rest_with_a_session_without_a_device_is_device_required():
    assert_api_error(client_for(UserFactory()).get("/dm/messages"), code="DEVICE_REQUIRED", status=409)


async def test_ws_with_a_session_whose_device_no_longer_exists_is_device_revoked():
    bob = await database_sync_to_async(party_whose_device_is_gone)()
    ws = await ws_connect(bob.token)
    await ws.send_json_to({"type": "dm.ack", "up_to": 1, "ref": "a"})
    error = await next_frame(ws, "error")
    assert (error["code"], error["ref"]) == ("DEVICE_REVOKED", "a")


async def test_ws_with_a_session_without_a_device_is_device_required():
    user = await database_sync_to_async(UserFactory)()
    token = await database_sync_to_async(login)(user)
    ws = await ws_connect(token)
    await ws.send_json_to({"type": "dm.sync", "since": 0, "ref": "s"})
    error = await next_frame(ws, "error")
    assert (error["code"], error["ref"]) == ("DEVICE_REQUIRED", "s")
