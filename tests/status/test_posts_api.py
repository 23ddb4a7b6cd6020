"""Posting, reading and deleting status posts; audience modes; 404 for outsiders on every path;
the audience snapshot; the 24-hour TTL at its boundary; the feature flag."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from status.models import StatusAudience, StatusPost, StatusView
from status.selectors.posts import audience_ids
from tests.conftest import assert_api_error
from tests.status.helpers import CT, add_contacts, block, people, post, post_id

pytestmark = pytest.mark.django_db


def audience_of(pid) -> set[int]:
    return set(audience_ids(pid))


def test_post_returns_id_expiry_and_epoch_and_expires_after_the_ttl(settings):
    settings.STATUS_TTL_HOURS = 24
    alice, bob = people(2)
    add_contacts(alice, bob)
    before = timezone.now()

    resp = post(alice)

    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert set(body) == {"id", "expires_at", "post_epoch"} and body["post_epoch"] == 1
    stored = StatusPost.objects.get(pk=body["id"])
    assert stored.expires_at - stored.created_at == timedelta(hours=24)
    assert stored.created_at >= before
    assert audience_of(stored.pk) == {bob.pk}


def test_a_media_reference_with_metadata_is_a_post_too_but_not_both_or_neither():
    alice, bob = people(2)
    add_contacts(alice, bob)
    pid = post_id(alice, media_ref="media/abc123", media_meta={"mime": "image/jpeg", "size": 1024})
    got = bob.client.get(f"/status/posts/{pid}").json()
    assert got["media_ref"] == "media/abc123" and got["media_meta"]["mime"] == "image/jpeg"
    assert got["ciphertext"] == ""

    assert_api_error(post(alice, ciphertext=CT, media_ref="media/x"), code="VALIDATION_ERROR", status=400)
    assert_api_error(post(alice, media_meta={"a": 1}), code="VALIDATION_ERROR", status=400)
    assert_api_error(post(alice, "everyone", ciphertext=CT), code="VALIDATION_ERROR", status=400)


def test_audience_modes_contacts_except_and_only_never_go_beyond_contacts():
    alice, bob, carol, dave, stranger = people(5)
    add_contacts(alice, bob, carol, dave)

    everyone = post_id(alice, "contacts")
    but_carol = post_id(alice, "contacts_except", [carol])
    only = post_id(alice, "only", [bob, stranger])

    assert audience_of(everyone) == {bob.pk, carol.pk, dave.pk}
    assert audience_of(but_carol) == {bob.pk, dave.pk}
    assert audience_of(only) == {bob.pk}  # the stranger is not a contact: dropped


def test_blocks_in_either_direction_keep_a_user_out_of_the_audience():
    alice, bob, carol, dave = people(4)
    add_contacts(alice, bob, carol, dave)
    block(bob, alice)  # bob blocked alice
    block(alice, carol)  # alice blocked carol

    assert audience_of(post_id(alice, "contacts")) == {dave.pk}
    assert audience_of(post_id(alice, "only", [bob, carol, dave])) == {dave.pk}


def test_the_audience_is_a_snapshot_a_later_contact_does_not_see_an_old_post():
    alice, bob, carol = people(3)
    add_contacts(alice, bob)
    pid = post_id(alice)

    add_contacts(alice, carol)

    assert audience_of(pid) == {bob.pk}
    assert_api_error(carol.client.get(f"/status/posts/{pid}"), code="NOT_FOUND", status=404)
    assert audience_of(post_id(alice)) == {bob.pk, carol.pk}


def test_outside_the_audience_a_post_does_not_exist_on_every_path():
    alice, bob, outsider = people(3)
    add_contacts(alice, bob)
    pid = post_id(alice)
    base = f"/status/posts/{pid}"
    c = outsider.client

    responses = [
        c.get(base),
        c.delete(base),
        c.patch(f"{base}/audience", {"audience_mode": "contacts"}, format="json"),
        c.post(f"{base}/views"),
        c.get(f"{base}/views"),
    ]
    for resp in responses:
        assert_api_error(resp, code="NOT_FOUND", status=404)
    # An audience member may read and view, but the owner's paths do not exist for them either.
    assert bob.client.get(base).status_code == 200
    for resp in (
        bob.client.delete(base),
        bob.client.patch(f"{base}/audience", {"audience_mode": "contacts"}, format="json"),
        bob.client.get(f"{base}/views"),
    ):
        assert_api_error(resp, code="NOT_FOUND", status=404)
    # Also expired: an outsider is still told 404, never 410.
    StatusPost.objects.filter(pk=pid).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_api_error(c.get(base), code="NOT_FOUND", status=404)
    assert_api_error(bob.client.get(base), code="GONE", status=410)


def test_a_block_after_posting_hides_the_post():
    alice, bob = people(2)
    add_contacts(alice, bob)
    pid = post_id(alice)
    block(alice, bob)
    assert_api_error(bob.client.get(f"/status/posts/{pid}"), code="NOT_FOUND", status=404)
    assert bob.client.get("/status/feed").json()["groups"] == []


def test_owner_sees_the_audience_a_viewer_does_not():
    alice, bob = people(2)
    add_contacts(alice, bob)
    pid = post_id(alice)
    mine = alice.client.get(f"/status/posts/{pid}").json()
    theirs = bob.client.get(f"/status/posts/{pid}").json()
    assert mine["audience"] == [bob.pk] and mine["audience_mode"] == "contacts"
    assert "audience" not in theirs and theirs["ciphertext"] == CT and theirs["seen"] is False


@pytest.mark.parametrize(("offset", "expected"), [(-1, 200), (1, 410)])
def test_ttl_boundary_one_second_before_and_after_expiry(offset, expected):
    alice, bob = people(2)
    add_contacts(alice, bob)
    pid = post_id(alice)
    expires_at = StatusPost.objects.get(pk=pid).expires_at

    with mock.patch("django.utils.timezone.now", return_value=expires_at + timedelta(seconds=offset)):
        paths = [
            bob.client.get(f"/status/posts/{pid}"),
            bob.client.post(f"/status/posts/{pid}/views"),
            alice.client.get(f"/status/posts/{pid}/views"),
        ]
    for resp in paths:
        if expected == 200:
            assert resp.status_code in (200, 201), resp.content
        else:
            assert_api_error(resp, code="GONE", status=410)


def test_owner_deletes_early_and_audience_and_views_go_with_it():
    alice, bob = people(2)
    add_contacts(alice, bob)
    pid = post_id(alice)
    assert bob.client.post(f"/status/posts/{pid}/views").status_code == 201

    assert alice.client.delete(f"/status/posts/{pid}").status_code == 204

    assert not StatusPost.objects.filter(pk=pid).exists()
    assert not StatusAudience.objects.filter(post_id=pid).exists()
    assert not StatusView.objects.filter(post_id=pid).exists()
    assert_api_error(bob.client.get(f"/status/posts/{pid}"), code="NOT_FOUND", status=404)


def test_status_disabled_answers_feature_disabled_everywhere(settings):
    alice, bob = people(2)
    add_contacts(alice, bob)
    pid = post_id(alice)
    settings.STATUS_ENABLED = False
    base = f"/status/posts/{pid}"
    for resp in (
        post(alice),
        alice.client.get("/status/feed"),
        alice.client.get(base),
        alice.client.delete(base),
        alice.client.patch(f"{base}/audience", {"audience_mode": "contacts"}, format="json"),
        bob.client.post(f"{base}/views"),
        alice.client.get(f"{base}/views"),
    ):
        assert_api_error(resp, code="FEATURE_DISABLED", status=403)


def test_unauthenticated_is_refused(api_client):
    assert_api_error(api_client.get("/status/feed"), code="UNAUTHENTICATED", status=401)
