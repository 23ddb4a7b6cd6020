"""Coming back on an existing device (issue 13): a new session binds to one of the user's active
devices only by proving it holds the device's private Ed25519 key (a signed server challenge);
then it reads the device's queue. A password alone, another key, a spent or expired challenge, a
signature made for another session, or someone else's device bind nothing."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.test import override_settings
from rest_framework.test import APIClient

from chatsite.accounts.models import SecurityEvent, Session
from tests.conftest import assert_api_error
from tests.dm.helpers import Party, add_device, open_conversation, party
from tests.dm.olm_client import OlmDevice, new_client_message_id
from tests.factories import DEFAULT_PASSWORD
from tests.realtime.clients import open_ws, until_closed

pytestmark = pytest.mark.django_db


def bind_message(challenge: str, device_id: str, session_id: str) -> bytes:
    """The documented byte string (docs/dm.md), written out here rather than imported, so a change
    to the server's spelling breaks this test as it would break clients."""
    return f"chatsite.e2ee.device-bind.v1\n{challenge}\n{device_id}\n{session_id}".encode()


def log_in(p: Party) -> tuple[APIClient, str]:
    """A new session for the party's user through POST /auth/login: (client, session id)."""
    resp = APIClient().post(
        "/auth/login", {"username": p.user.username, "password": DEFAULT_PASSWORD}, format="json"
    )
    assert resp.status_code == 200, resp.content
    body = resp.json()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    return client, body["session_id"]


def challenge_for(client: APIClient, device_id: str) -> str:
    resp = client.post(f"/e2ee/devices/{device_id}/challenge")
    assert resp.status_code == 201, resp.content
    return resp.json()["challenge"]


def bind(client: APIClient, device_id: str, challenge: str, signature: str):
    return client.post(
        f"/e2ee/devices/{device_id}/bind", {"challenge": challenge, "signature": signature}, format="json"
    )


def signed(device: OlmDevice, challenge: str, device_id: str, session_id: str) -> str:
    return device.account.sign(bind_message(challenge, device_id, session_id)).to_base64()


def come_back(p: Party, client: APIClient, session_id: str):
    """The whole flow for the party's device: challenge, sign with its own key, bind."""
    challenge = challenge_for(client, p.device_id)
    return bind(client, p.device_id, challenge, signed(p.device, challenge, p.device_id, session_id))


def test_a_device_comes_back_after_logout_and_reads_what_was_queued_meanwhile():
    alice, bob = party("alice"), party("bob")
    conversation = open_conversation(alice, bob)
    assert bob.client.post("/auth/logout").status_code == 204

    # While Bob is away, Alice encrypts to his device with a real Olm session.
    bundle = alice.client.get(f"/e2ee/bundles/{bob.user.pk}").json()
    (bob_entry,) = bundle["devices"]
    assert bob_entry["device_id"] == bob.device_id
    alice.device.open_session(bob_entry)
    sent = alice.client.post(
        f"/dm/conversations/{conversation}/messages",
        {
            "client_message_id": new_client_message_id(),
            "envelopes": [alice.device.envelope(bob.device_id, b"while you were out")],
        },
        format="json",
    )
    assert sent.status_code == 201, sent.content

    client, session_id = log_in(bob)
    assert_api_error(client.get("/dm/messages"), code="DEVICE_REQUIRED", status=409)

    resp = client.post(f"/e2ee/devices/{bob.device_id}/challenge")
    assert resp.status_code == 201, resp.content
    assert resp["Cache-Control"] == "no-store"
    challenge = resp.json()["challenge"]
    assert len(challenge) >= 43 and resp.json()["expires_at"]

    resp = bind(client, bob.device_id, challenge, signed(bob.device, challenge, bob.device_id, session_id))
    assert resp.status_code == 200, resp.content
    assert resp.json()["device_id"] == bob.device_id and resp.json()["current"] is True
    assert str(Session.objects.get(pk=session_id).device_id) == bob.device_id

    page = client.get("/dm/messages").json()
    (frame,) = page["messages"]
    assert frame["message_id"] == sent.json()["message_id"]
    assert bob.device.decrypt(frame, alice.device.identity_key) == b"while you were out"

    event = SecurityEvent.objects.get(kind=SecurityEvent.Kind.DEVICE_BOUND)
    assert event.user_id == bob.user.pk and not event.flagged
    assert event.data == {"device_id": bob.device_id, "session_id": session_id, "sessions_revoked": 0}


def test_binding_revokes_the_devices_previous_session_which_was_still_live():
    bob = party()
    old_session = bob.session
    client, session_id = log_in(bob)

    resp = come_back(bob, client, session_id)

    assert resp.status_code == 200, resp.content
    old_session.refresh_from_db()
    assert old_session.revoked_at is not None
    assert_api_error(bob.client.get("/dm/messages"), code="UNAUTHENTICATED", status=401)
    assert client.get("/dm/messages").status_code == 200
    event = SecurityEvent.objects.get(kind=SecurityEvent.Kind.DEVICE_BOUND)
    assert event.data["sessions_revoked"] == 1


def test_a_device_whose_session_expired_comes_back():
    # An expired session is not revoked, so it still holds uq_sessions_live_device until the bind
    # revokes it.
    bob = party()
    Session.objects.filter(pk=bob.session.pk).update(expires_at=bob.session.created_at)
    assert_api_error(bob.client.get("/dm/messages"), code="UNAUTHENTICATED", status=401)
    client, session_id = log_in(bob)

    resp = come_back(bob, client, session_id)

    assert resp.status_code == 200, resp.content
    assert client.get("/dm/messages").status_code == 200


@pytest.mark.django_db(transaction=True)
async def test_binding_closes_the_previous_sessions_streams():
    bob = await database_sync_to_async(party)()
    old_ws, hello = await open_ws(bob.token)
    assert hello["device_id"] == bob.device_id

    def rebind():
        return come_back(bob, *log_in(bob))

    resp = await database_sync_to_async(rebind)()

    assert resp.status_code == 200, resp.content
    code, _ = await until_closed(old_ws, timeout=1.0)
    assert code == 4401
    await old_ws.disconnect()


def test_a_signature_by_another_key_is_refused_binds_nothing_and_is_a_flagged_event():
    bob = party()
    assert bob.client.post("/auth/logout").status_code == 204
    client, session_id = log_in(bob)
    challenge = challenge_for(client, bob.device_id)
    impostor = OlmDevice()  # a fresh account: certainly not the device's signing key

    resp = bind(client, bob.device_id, challenge, signed(impostor, challenge, bob.device_id, session_id))

    body = assert_api_error(resp, code="INVALID_SIGNATURE", status=400)
    assert body["field"] == "signature"
    assert Session.objects.get(pk=session_id).device_id is None
    assert_api_error(client.get("/dm/messages"), code="DEVICE_REQUIRED", status=409)
    event = SecurityEvent.objects.get(kind=SecurityEvent.Kind.DEVICE_BIND_FAILED)
    assert event.flagged and event.user_id == bob.user.pk
    assert event.data == {"device_id": bob.device_id, "session_id": session_id, "reason": "bad_signature"}
    assert not SecurityEvent.objects.filter(kind=SecurityEvent.Kind.DEVICE_BOUND).exists()
    # The attempt spent the challenge: even the right signature over it is now too late.
    right = signed(bob.device, challenge, bob.device_id, session_id)
    assert_api_error(bind(client, bob.device_id, challenge, right), code="GONE", status=410)


@pytest.mark.django_db(transaction=True)
def test_a_challenge_is_single_use_even_for_parallel_binds():
    bob = party()
    client, session_id = log_in(bob)
    challenge = challenge_for(client, bob.device_id)
    signature = signed(bob.device, challenge, bob.device_id, session_id)
    barrier = threading.Barrier(4)

    def attempt(_):
        try:
            barrier.wait()
            return bind(client, bob.device_id, challenge, signature).status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(attempt, range(4)))

    # One bind; the others find the challenge spent (410) or the session already bound (409).
    assert statuses[0] == 200 and set(statuses[1:]) <= {409, 410}, statuses
    assert SecurityEvent.objects.filter(kind=SecurityEvent.Kind.DEVICE_BOUND).count() == 1


def test_a_signature_over_a_malformed_body_spends_nothing():
    bob = party()
    client, session_id = log_in(bob)
    challenge = challenge_for(client, bob.device_id)

    body = assert_api_error(
        bind(client, bob.device_id, challenge, "not base64!"), code="VALIDATION_ERROR", status=400
    )
    assert list(body["errors"]) == ["signature"]
    signature = signed(bob.device, challenge, bob.device_id, session_id)
    assert bind(client, bob.device_id, challenge, signature).status_code == 200


@override_settings(E2EE_DEVICE_CHALLENGE_TTL_S=1)
def test_a_challenge_expires():
    bob = party()
    client, session_id = log_in(bob)
    challenge = challenge_for(client, bob.device_id)
    time.sleep(1.2)

    resp = bind(client, bob.device_id, challenge, signed(bob.device, challenge, bob.device_id, session_id))

    assert_api_error(resp, code="GONE", status=410)
    assert Session.objects.get(pk=session_id).device_id is None


def test_a_signature_made_for_another_session_is_refused():
    bob = party()
    assert bob.client.post("/auth/logout").status_code == 204
    # The device's own new session asks for a challenge and signs it, but has not bound yet.
    honest, honest_session = log_in(bob)
    challenge = challenge_for(honest, bob.device_id)
    signature = signed(bob.device, challenge, bob.device_id, honest_session)
    # Someone else with the password, who saw that request, tries to use it for their session.
    thief, _thief_session = log_in(bob)
    assert_api_error(bind(thief, bob.device_id, challenge, signature), code="GONE", status=410)
    own_challenge = challenge_for(thief, bob.device_id)
    assert_api_error(
        bind(thief, bob.device_id, own_challenge, signature), code="INVALID_SIGNATURE", status=400
    )
    assert not Session.objects.filter(device_id=bob.device_id, revoked_at__isnull=True).exists()
    # The honest session's challenge was not spent by the thief's attempt.
    assert bind(honest, bob.device_id, challenge, signature).status_code == 200


def test_someone_elses_device_or_an_unknown_one_is_404():
    alice, bob = party(), party()
    client, _ = log_in(bob)
    for device_id in (alice.device_id, str(uuid.uuid4())):
        assert_api_error(client.post(f"/e2ee/devices/{device_id}/challenge"), code="NOT_FOUND", status=404)
        signature = "A" * 86
        assert_api_error(bind(client, device_id, "x" * 43, signature), code="NOT_FOUND", status=404)


def test_a_revoked_device_cannot_be_bound():
    bob = party()
    client, _ = log_in(bob)
    assert bob.client.delete(f"/e2ee/devices/{bob.device_id}").status_code == 204
    resp = client.post(f"/e2ee/devices/{bob.device_id}/challenge")
    assert_api_error(resp, code="DEVICE_REVOKED", status=409)
    resp = bind(client, bob.device_id, "x" * 43, "A" * 86)
    assert_api_error(resp, code="DEVICE_REVOKED", status=409)


def test_a_session_that_already_has_a_device_cannot_take_another():
    bob = party()
    tablet = add_device(bob.user, name="tablet")
    resp = tablet.client.post(f"/e2ee/devices/{bob.device_id}/challenge")
    assert_api_error(resp, code="CONFLICT", status=409)
    resp = bind(tablet.client, bob.device_id, "x" * 43, "A" * 86)
    assert_api_error(resp, code="CONFLICT", status=409)


@override_settings(E2EE_DEVICE_CHALLENGES_PER_USER_PER_HOUR=2)
def test_challenges_are_rate_limited_per_user_and_a_new_log_in_buys_none():
    bob = party()
    client, _ = log_in(bob)
    challenge_for(client, bob.device_id)
    challenge_for(client, bob.device_id)
    body = assert_api_error(
        client.post(f"/e2ee/devices/{bob.device_id}/challenge"), code="RATE_LIMITED", status=429
    )
    assert body["retry_in_seconds"] > 0
    other, _ = log_in(bob)  # a fresh session of the same account
    assert_api_error(other.post(f"/e2ee/devices/{bob.device_id}/challenge"), code="RATE_LIMITED", status=429)
