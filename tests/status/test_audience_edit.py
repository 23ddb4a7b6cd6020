"""Editing a post's audience: same rules as at post time, post_epoch bumped, status.rekey to the
owner and the new audience (never to those removed)."""

from __future__ import annotations

import pytest
from django.db import transaction

from status.services import posts as services
from tests.status.helpers import add_contacts, block, people, post_id

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def events(monkeypatch):
    captured = []

    def capture(user_id, frame, *, source=None):
        transaction.on_commit(lambda: captured.append((user_id, frame, source)))

    monkeypatch.setattr(services, "publish_to_user", capture)
    return captured


def test_audience_edit_bumps_the_epoch_and_tells_who_must_rekey(events):
    alice, bob, carol, dave = people(4)
    add_contacts(alice, bob, carol, dave)
    pid = post_id(alice, "only", [bob, carol])
    events.clear()

    resp = alice.client.patch(
        f"/status/posts/{pid}/audience",
        {"audience_mode": "contacts_except", "audience": [carol.pk]},
        format="json",
    )

    assert resp.status_code == 200, resp.content
    assert resp.json() == {
        "id": pid,
        "post_epoch": 2,
        "audience_mode": "contacts_except",
        "audience": sorted([bob.pk, dave.pk]),
    }
    by_user = {u: f for u, f, s in events if s == "status"}
    assert set(by_user) == {alice.pk, bob.pk, dave.pk}  # not carol: removed
    assert all(
        f["type"] == "status.rekey" and f["post_epoch"] == 2 and f["post_id"] == pid for f in by_user.values()
    )
    assert by_user[alice.pk]["added"] == [dave.pk] and by_user[alice.pk]["removed"] == [carol.pk]
    # Carol no longer sees it; Dave does.
    assert carol.client.get(f"/status/posts/{pid}").status_code == 404
    assert dave.client.get(f"/status/posts/{pid}").json()["post_epoch"] == 2


def test_audience_edit_never_reaches_beyond_contacts_or_across_blocks(events):
    alice, bob, carol, stranger = people(4)
    add_contacts(alice, bob, carol)
    pid = post_id(alice, "only", [bob])
    block(carol, alice)

    resp = alice.client.patch(
        f"/status/posts/{pid}/audience",
        {"audience_mode": "only", "audience": [bob.pk, carol.pk, stranger.pk]},
        format="json",
    )

    assert resp.json()["audience"] == [bob.pk]
