"""The feed: live posts I am in the audience of, grouped by author (newest author first), each
author's posts newest first, seen state, cursor pagination; new posts reach the audience's
streams after commit (status.posted)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from status.models import StatusPost
from status.services import posts as services
from tests.conftest import assert_api_error
from tests.status.helpers import add_contacts, people, post_id

pytestmark = pytest.mark.django_db


def _age(pid, minutes: int) -> None:
    created = timezone.now() - timedelta(minutes=minutes)
    StatusPost.objects.filter(pk=pid).update(created_at=created, expires_at=created + timedelta(hours=24))


def test_feed_groups_by_author_newest_first_with_seen_state():
    me, alice, bob, carol = people(4)
    for author in (alice, bob, carol):
        add_contacts(author, me)
    a1, a2 = post_id(alice), post_id(alice)
    b1 = post_id(bob)
    c1 = post_id(carol, "only", [])  # not to me
    _age(a1, 30)
    _age(a2, 10)
    _age(b1, 5)
    _age(c1, 1)
    assert me.client.post(f"/status/posts/{a1}/views").status_code == 201

    body = me.client.get("/status/feed").json()

    assert [g["owner_user_id"] for g in body["groups"]] == [bob.pk, alice.pk]
    bob_group, alice_group = body["groups"]
    assert [p["id"] for p in alice_group["posts"]] == [a2, a1]
    assert [p["seen"] for p in alice_group["posts"]] == [False, True]
    assert alice_group["all_seen"] is False
    assert bob_group["all_seen"] is False and bob_group["posts"][0]["seen"] is False
    assert body["next_cursor"] is None

    me.client.post(f"/status/posts/{a2}/views")
    alice_group = me.client.get("/status/feed").json()["groups"][1]
    assert alice_group["all_seen"] is True


def test_feed_leaves_out_expired_posts():
    me, alice = people(2)
    add_contacts(alice, me)
    pid = post_id(alice)
    StatusPost.objects.filter(pk=pid).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert me.client.get("/status/feed").json()["groups"] == []


def test_feed_pages_by_cursor_through_every_author_once():
    me, *authors = people(6)
    for i, author in enumerate(authors):
        add_contacts(author, me)
        _age(post_id(author), i)  # authors[0] newest
    seen, cursor, pages = [], None, 0
    while True:
        url = "/status/feed?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = me.client.get(url).json()
        pages += 1
        seen += [g["owner_user_id"] for g in body["groups"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [a.pk for a in authors]
    assert pages == 3


def test_a_bad_cursor_or_limit_is_a_validation_error():
    (me,) = people(1)
    assert_api_error(me.client.get("/status/feed?cursor=nonsense"), code="VALIDATION_ERROR", status=400)
    assert_api_error(me.client.get("/status/feed?limit=0"), code="VALIDATION_ERROR", status=400)


@pytest.mark.django_db(transaction=True)
def test_status_posted_reaches_the_audience_after_commit(monkeypatch):
    from django.db import transaction

    events = []

    def capture(user_id, frame, *, source=None):
        transaction.on_commit(lambda: events.append((user_id, frame, source)))

    monkeypatch.setattr(services, "publish_to_user", capture)
    alice, bob, carol, outsider = people(4)
    add_contacts(alice, bob, carol)

    with transaction.atomic():
        post = services.post_create(
            user_id=alice.pk, audience_mode="only", audience=[bob.pk], ciphertext="eA"
        )
        assert events == []  # nothing before commit

    assert events == [
        (
            bob.pk,
            {
                "type": "status.posted",
                "post_id": str(post.pk),
                "owner_user_id": alice.pk,
                "created_at": post.created_at.isoformat(),
                "expires_at": post.expires_at.isoformat(),
                "post_epoch": 1,
            },
            "status",
        )
    ]
