"""Contacts and blocks over the REST API, and the `is_blocked` selector other apps rely on."""

from __future__ import annotations

import pytest

from chatsite.accounts import selectors
from chatsite.accounts.models import Block, Contact
from tests.conftest import assert_api_error, client_for
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


# --- Contacts -------------------------------------------------------------------------------


def test_add_contact_returns_201_and_lists_it():
    me, friend = UserFactory(), UserFactory()
    client = client_for(me)

    resp = client.post("/contacts", {"user_id": friend.pk}, format="json")

    assert resp.status_code == 201, resp.content
    assert resp.json()["user_id"] == friend.pk
    listed = client.get("/contacts").json()["contacts"]
    assert [(c["user_id"], c["username"]) for c in listed] == [(friend.pk, friend.username)]


def test_add_contact_twice_is_idempotent():
    me, friend = UserFactory(), UserFactory()
    client = client_for(me)
    client.post("/contacts", {"user_id": friend.pk}, format="json")

    resp = client.post("/contacts", {"user_id": friend.pk}, format="json")

    assert resp.status_code == 201
    assert Contact.objects.filter(owner=me, contact=friend).count() == 1


def test_add_self_as_contact_is_400():
    me = UserFactory()

    resp = client_for(me).post("/contacts", {"user_id": me.pk}, format="json")

    assert_api_error(resp, code="BAD_REQUEST", status=400)
    assert not Contact.objects.exists()


def test_add_unknown_user_as_contact_is_404():
    me = UserFactory()

    resp = client_for(me).post("/contacts", {"user_id": me.pk + 10_000}, format="json")

    assert_api_error(resp, code="NOT_FOUND", status=404)


@pytest.mark.parametrize("state", [{"disabled": True}, {"is_active": False}], ids=["disabled", "inactive"])
def test_add_a_disabled_or_inactive_user_as_contact_is_404(state):
    me, gone = UserFactory(), UserFactory(**state)

    resp = client_for(me).post("/contacts", {"user_id": gone.pk}, format="json")

    body = assert_api_error(resp, code="NOT_FOUND", status=404)
    assert gone.username not in str(body)
    assert not Contact.objects.exists()


def test_block_a_disabled_user_is_404():
    me, gone = UserFactory(), UserFactory(disabled=True)

    resp = client_for(me).post("/blocks", {"user_id": gone.pk}, format="json")

    assert_api_error(resp, code="NOT_FOUND", status=404)


def test_contact_adds_over_the_hourly_limit_are_429(settings):
    settings.CONTACT_ADDS_PER_USER_PER_HOUR = 3
    me, others = UserFactory(), [UserFactory() for _ in range(4)]
    client = client_for(me)
    for other in others[:3]:
        assert client.post("/contacts", {"user_id": other.pk}, format="json").status_code == 201

    resp = client.post("/contacts", {"user_id": others[3].pk}, format="json")

    body = assert_api_error(resp, code="RATE_LIMITED", status=429)
    assert body["retry_in_seconds"] > 0
    assert Contact.objects.filter(owner=me).count() == 3


def test_enumerating_ids_through_contacts_and_blocks_shares_one_limit(settings):
    settings.CONTACT_ADDS_PER_USER_PER_HOUR = 2
    me, a, b, c = UserFactory(), UserFactory(), UserFactory(), UserFactory()
    client = client_for(me)
    client.post("/contacts", {"user_id": a.pk}, format="json")
    client.post("/blocks", {"user_id": b.pk}, format="json")

    assert_api_error(
        client.post("/blocks", {"user_id": c.pk}, format="json"), code="RATE_LIMITED", status=429
    )


def test_opening_conversations_by_id_draws_on_the_same_limit(settings):
    settings.CONTACT_ADDS_PER_USER_PER_HOUR = 2
    me, a, b, c = UserFactory(), UserFactory(), UserFactory(), UserFactory()
    client = client_for(me)
    assert client.post("/contacts", {"user_id": a.pk}, format="json").status_code == 201
    assert client.post("/dm/conversations", {"user_id": b.pk}, format="json").status_code == 201

    resp = client.post("/dm/conversations", {"user_id": c.pk}, format="json")

    assert_api_error(resp, code="RATE_LIMITED", status=429)
    assert "username" not in resp.json()


def test_contacts_list_shows_only_my_contacts():
    me, friend, stranger, strangers_friend = UserFactory(), UserFactory(), UserFactory(), UserFactory()
    Contact.objects.create(owner=me, contact=friend)
    Contact.objects.create(owner=stranger, contact=strangers_friend)

    listed = client_for(me).get("/contacts").json()["contacts"]

    assert [c["user_id"] for c in listed] == [friend.pk]


def test_delete_contact_removes_it():
    me, friend = UserFactory(), UserFactory()
    Contact.objects.create(owner=me, contact=friend)
    client = client_for(me)

    resp = client.delete(f"/contacts/{friend.pk}")

    assert resp.status_code == 204
    assert client.get("/contacts").json()["contacts"] == []


def test_delete_missing_contact_is_404():
    me, stranger = UserFactory(), UserFactory()

    resp = client_for(me).delete(f"/contacts/{stranger.pk}")

    assert_api_error(resp, code="NOT_FOUND", status=404)


# --- Blocks ---------------------------------------------------------------------------------


def test_block_user_makes_is_blocked_true_for_their_messages_to_me():
    me, pest = UserFactory(), UserFactory()

    resp = client_for(me).post("/blocks", {"user_id": pest.pk}, format="json")

    assert resp.status_code == 201, resp.content
    assert resp.json()["user_id"] == pest.pk
    assert selectors.is_blocked(sender_id=pest.pk, recipient_id=me.pk) is True
    # Blocking is one-way: I can still reach them.
    assert selectors.is_blocked(sender_id=me.pk, recipient_id=pest.pk) is False


def test_block_list_shows_blocked_users():
    me, pest = UserFactory(), UserFactory()
    Block.objects.create(blocker=me, blocked=pest)

    listed = client_for(me).get("/blocks").json()["blocks"]

    assert [(b["user_id"], b["username"]) for b in listed] == [(pest.pk, pest.username)]


def test_block_twice_is_idempotent():
    me, pest = UserFactory(), UserFactory()
    client = client_for(me)
    client.post("/blocks", {"user_id": pest.pk}, format="json")

    resp = client.post("/blocks", {"user_id": pest.pk}, format="json")

    assert resp.status_code == 201
    assert Block.objects.filter(blocker=me, blocked=pest).count() == 1


def test_block_self_is_400():
    me = UserFactory()

    assert_api_error(
        client_for(me).post("/blocks", {"user_id": me.pk}, format="json"), code="BAD_REQUEST", status=400
    )


def test_unblock_makes_is_blocked_false():
    me, pest = UserFactory(), UserFactory()
    Block.objects.create(blocker=me, blocked=pest)

    resp = client_for(me).delete(f"/blocks/{pest.pk}")

    assert resp.status_code == 204
    assert selectors.is_blocked(sender_id=pest.pk, recipient_id=me.pk) is False


def test_unblock_someone_not_blocked_is_404():
    me, stranger = UserFactory(), UserFactory()

    assert_api_error(client_for(me).delete(f"/blocks/{stranger.pk}"), code="NOT_FOUND", status=404)
