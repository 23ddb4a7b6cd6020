"""Stream tickets (chatsite/accounts/tickets.py): POST /auth/stream-ticket, then `?ticket=` once on
/ws or /dm/sse. Long-lived bearer tokens are no longer read from URLs (`?token=`)."""

from __future__ import annotations

import time

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient
from django.utils.dateparse import parse_datetime

from chatsite.accounts import services as account_services
from chatsite.accounts.models import Session
from chatsite.accounts.tickets import stream_ticket_issue, stream_ticket_redeem
from chatsite.accounts.tokens import hash_token
from chatsite.api.redis import get_redis
from chatsite.asgi import application
from tests.conftest import assert_api_error, client_for, login
from tests.dm.helpers import party
from tests.factories import UserFactory
from tests.realtime.clients import Communicator, SseClient
from tests.redis_server import RedisProcess, relay_on

TIMEOUT = 5


def _session(token: str) -> Session:
    return Session.objects.get(token_hash=hash_token(token))


@pytest.mark.django_db
def test_post_stream_ticket_returns_a_ticket_and_its_expiry(user, settings):
    settings.STREAM_TICKET_TTL_S = 60
    before = time.time()

    resp = client_for(user).post("/auth/stream-ticket")

    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert set(body) == {"ticket", "expires_at"}
    assert len(body["ticket"]) >= 32
    assert before + 59 <= parse_datetime(body["expires_at"]).timestamp() <= time.time() + 61
    assert resp["Cache-Control"] == "no-store"


@pytest.mark.django_db
def test_post_stream_ticket_needs_a_bearer_token(api_client):
    assert_api_error(api_client.post("/auth/stream-ticket"), code="UNAUTHENTICATED", status=401)


@pytest.mark.django_db
def test_a_ticket_opens_the_issuing_session_once(user, redis_required):
    session = _session(login(user))
    ticket, _ = stream_ticket_issue(session=session)

    assert stream_ticket_redeem(ticket=ticket) == session
    assert stream_ticket_redeem(ticket=ticket) is None


@pytest.mark.django_db
def test_a_ticket_expires_after_stream_ticket_ttl(user, settings, redis_required):
    settings.STREAM_TICKET_TTL_S = 1
    ticket, _ = stream_ticket_issue(session=_session(login(user)))

    time.sleep(1.2)

    assert stream_ticket_redeem(ticket=ticket) is None


@pytest.mark.django_db
def test_redis_holds_only_a_hash_of_the_ticket(user, redis_required):
    ticket, _ = stream_ticket_issue(session=_session(login(user)))

    keys = [key.decode() for key in redis_required.keys("stream_ticket:*")]

    assert len(keys) == 1 and ticket not in keys[0]


@pytest.mark.django_db
def test_a_ticket_of_a_session_revoked_since_is_refused(user):
    token = login(user)
    session = _session(token)
    ticket, _ = stream_ticket_issue(session=session)

    account_services.session_revoke(user=user, session_id=session.pk)

    assert stream_ticket_redeem(ticket=ticket) is None


@pytest.mark.django_db
def test_an_unknown_ticket_is_refused():
    assert stream_ticket_redeem(ticket="not-a-ticket") is None
    assert stream_ticket_redeem(ticket="x" * 500) is None


@pytest.fixture
def embedded(settings):
    """Embedded mode (REDIS_URL unset): tickets live in the process."""
    settings.REDIS_URL = ""
    get_redis.cache_clear()
    yield
    get_redis.cache_clear()


@pytest.mark.django_db
def test_without_redis_a_ticket_still_works_once(user, embedded):
    session = _session(login(user))
    ticket, _ = stream_ticket_issue(session=session)

    assert stream_ticket_redeem(ticket=ticket) == session
    assert stream_ticket_redeem(ticket=ticket) is None


# --- on the streams --------------------------------------------------------------------------


async def _ws_open(path: str) -> tuple[Communicator, dict]:
    comm = Communicator(application, path)
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected
    return comm, await comm.receive_json_from(timeout=TIMEOUT)


async def _ws_close_code(comm: Communicator) -> int:
    while True:
        message = await comm.receive_output(timeout=TIMEOUT)
        if message["type"] == "websocket.close":
            return message["code"]


@pytest.mark.django_db(transaction=True)
async def test_ws_ticket_opens_a_stream_of_the_issuing_session_once():
    user = await database_sync_to_async(UserFactory)()
    token = await database_sync_to_async(login)(user)
    session = await database_sync_to_async(_session)(token)
    ticket, _ = await database_sync_to_async(stream_ticket_issue)(session=session)

    first, hello = await _ws_open(f"/ws?ticket={ticket}")
    try:
        assert hello["type"] == "hello"
        assert hello["session_id"] == str(session.pk)

        again, closing = await _ws_open(f"/ws?ticket={ticket}")
        assert closing["type"] == "closing"
        assert await _ws_close_code(again) == 4401
    finally:
        await first.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_ws_token_query_parameter_is_no_longer_accepted():
    user = await database_sync_to_async(UserFactory)()
    token = await database_sync_to_async(login)(user)

    comm, closing = await _ws_open(f"/ws?token={token}")

    assert closing["type"] == "closing"
    assert await _ws_close_code(comm) == 4401


def _sse_with_ticket(ticket: str) -> SseClient:
    client = SseClient(f"/dm/sse?ticket={ticket}", token="")
    client.scope["headers"] = [h for h in client.scope["headers"] if h[0] != b"authorization"]
    return client


@pytest.mark.django_db(transaction=True)
async def test_sse_ticket_opens_the_stream_once():
    bob = await database_sync_to_async(party)()
    session = await database_sync_to_async(_session)(bob.token)
    ticket, _ = await database_sync_to_async(stream_ticket_issue)(session=session)

    async with _sse_with_ticket(ticket) as sse:
        heartbeat = await sse.next_event("heartbeat")
        assert sse.status == 200
        assert heartbeat["data"]["type"] == "heartbeat"

        again = await AsyncClient().get(f"/dm/sse?ticket={ticket}", secure=True)
        assert_api_error(again, code="UNAUTHENTICATED", status=401)


@pytest.mark.django_db(transaction=True)
async def test_sse_token_query_parameter_is_no_longer_accepted():
    bob = await database_sync_to_async(party)()

    resp = await AsyncClient().get(f"/dm/sse?token={bob.token}", secure=True)

    assert_api_error(resp, code="UNAUTHENTICATED", status=401)


@pytest.mark.django_db
def test_with_redis_down_no_ticket_is_issued_and_bearer_streams_are_suggested(user):
    server = RedisProcess()
    server.start()
    try:
        with relay_on(server):
            client = client_for(user)
            server.stop()

            resp = client.post("/auth/stream-ticket")

        body = assert_api_error(resp, code="SERVICE_UNAVAILABLE", status=503)
        assert "Authorization: Bearer" in body["detail"]
    finally:
        server.stop()
