"""GET /users/lookup (issue 13): a user's id from their exact username, normalised as log-in does;
no prefix or partial matching; unknown and disabled accounts answer the same 404; and every
look-up, hit or miss, draws on the budget contacts, blocks and new conversations share, so the
endpoint cannot list users."""

from __future__ import annotations

import pytest
from django.test import override_settings

from chatsite.accounts import services
from tests.conftest import assert_api_error, client_for
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def lookup(client, username):
    return client.get("/users/lookup", {"username": username})


@pytest.mark.parametrize("typed", ["alice", "ALICE", "Alice", "ａｌｉｃｅ", " alice "])
def test_an_exact_name_after_normalisation_finds_the_user(typed):
    alice = UserFactory(username="alice")
    resp = lookup(client_for(UserFactory()), typed)
    assert resp.status_code == 200, resp.content
    assert resp.json() == {"user_id": alice.pk, "username": "alice"}


@pytest.mark.parametrize("typed", ["ali", "alic", "alice2", "al%", "ali_e", "a*", "lice", "alice."])
def test_prefixes_patterns_and_near_misses_find_nothing(typed):
    UserFactory(username="alice")
    assert_api_error(lookup(client_for(UserFactory()), typed), code="NOT_FOUND", status=404)


def test_a_disabled_or_inactive_account_answers_exactly_like_an_unknown_one():
    UserFactory(username="carol", disabled=True)
    UserFactory(username="dave", is_active=False)
    client = client_for(UserFactory())
    unknown = assert_api_error(lookup(client, "nobody"), code="NOT_FOUND", status=404)
    assert assert_api_error(lookup(client, "carol"), code="NOT_FOUND", status=404) == unknown
    assert assert_api_error(lookup(client, "dave"), code="NOT_FOUND", status=404) == unknown


def test_looking_yourself_up_finds_you():
    me = UserFactory(username="me_myself")
    assert lookup(client_for(me), "me_myself").json() == {"user_id": me.pk, "username": "me_myself"}


def test_the_name_is_required_and_bounded():
    client = client_for(UserFactory())
    for params in ({}, {"username": ""}, {"username": "x" * 151}):
        body = assert_api_error(client.get("/users/lookup", params), code="VALIDATION_ERROR", status=400)
        assert list(body["errors"]) == ["username"]


def test_it_needs_a_session(api_client):
    UserFactory(username="alice")
    assert_api_error(lookup(api_client, "alice"), code="UNAUTHENTICATED", status=401)


@override_settings(CONTACT_ADDS_PER_USER_PER_HOUR=4)
def test_hits_and_misses_draw_on_the_budget_contacts_blocks_and_conversations_share():
    me = UserFactory()
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    client = client_for(me)
    assert lookup(client, "alice").status_code == 200
    assert lookup(client, "nobody").status_code == 404
    assert client.post("/contacts", {"user_id": bob.pk}, format="json").status_code == 201
    services.block_add(blocker=me, user_id=alice.pk)

    body = assert_api_error(lookup(client, "bob"), code="RATE_LIMITED", status=429)
    assert body["retry_in_seconds"] > 0
    assert_api_error(
        client.post("/contacts", {"user_id": alice.pk}, format="json"), code="RATE_LIMITED", status=429
    )
    # The budget is the user's, not the session's: a new log-in does not reset it.
    assert_api_error(lookup(client_for(me), "bob"), code="RATE_LIMITED", status=429)
    # Someone else's is untouched.
    assert lookup(client_for(bob), "alice").status_code == 200


@override_settings(CONTACT_ADDS_PER_USER_PER_HOUR=3)
def test_the_limit_is_contact_adds_per_user_per_hour():
    client = client_for(UserFactory())
    for name in ("guess1", "guess2", "guess3"):
        assert_api_error(lookup(client, name), code="NOT_FOUND", status=404)
    assert_api_error(lookup(client, "guess4"), code="RATE_LIMITED", status=429)
