"""Refusals of /dm/sse carry the headers every other endpoint's do."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient

from tests.dm.helpers import party

pytestmark = pytest.mark.django_db(transaction=True)


async def test_sse_without_credentials_is_401_with_www_authenticate():
    resp = await AsyncClient().get("/dm/sse", secure=True)

    assert resp.status_code == 401
    assert resp.json()["code"] == "UNAUTHENTICATED"
    assert resp["WWW-Authenticate"] == 'Bearer realm="api"'


async def test_sse_over_the_connection_limit_is_429_with_x_retry_after(settings):
    settings.MAX_CONNS_PER_IP = 0
    bob = await database_sync_to_async(party)()

    resp = await AsyncClient().get("/dm/sse", secure=True, headers={"Authorization": f"Bearer {bob.token}"})

    assert resp.status_code == 429
    assert resp.json()["code"] == "RATE_LIMITED" and resp.json()["retry_in_seconds"] == 5
    assert resp["X-Retry-After"] == "5"
