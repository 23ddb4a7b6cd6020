"""Views: recorded once per viewer (also under real parallel requests, each thread on its own
database connection); the owner sees who viewed only where the viewer's read receipts allow it,
and an owner with read receipts off sees no one's (reciprocity)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from presence.models import UserPresence
from status.models import StatusView
from status.selectors.posts import read_receipts_enabled
from status.services.posts import view_record
from tests.status.helpers import add_contacts, people, post_id


def receipts(person, enabled: bool) -> None:
    UserPresence.objects.update_or_create(
        user_id=person.pk, defaults={"privacy_settings": {"read_receipts": enabled}}
    )


@pytest.mark.django_db
def test_a_view_is_recorded_once_and_the_second_call_is_200_with_the_first_time():
    alice, bob = people(2)
    add_contacts(alice, bob)
    pid = post_id(alice)

    first = bob.client.post(f"/status/posts/{pid}/views")
    second = bob.client.post(f"/status/posts/{pid}/views")

    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["viewed_at"] == second.json()["viewed_at"]
    assert StatusView.objects.filter(post_id=pid).count() == 1
    assert bob.client.get(f"/status/posts/{pid}").json()["seen"] is True


@pytest.mark.django_db
def test_the_owners_own_view_is_not_recorded():
    alice, bob = people(2)
    add_contacts(alice, bob)
    pid = post_id(alice)
    assert alice.client.post(f"/status/posts/{pid}/views").status_code == 200
    assert StatusView.objects.filter(post_id=pid).count() == 0


@pytest.mark.django_db(transaction=True)
def test_parallel_views_by_one_viewer_record_one_row():
    assert connection.vendor == "postgresql"
    alice, bob, carol = people(3)
    add_contacts(alice, bob, carol)
    pid = post_id(alice)
    n = 12
    barrier = threading.Barrier(n)
    results, errors = [], []

    def worker(user_id):
        try:
            barrier.wait(timeout=30)
            results.append((user_id, view_record(user_id=user_id, post_id=pid)))
        except BaseException as exc:  # noqa: BLE001  (reported to the main thread)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(bob.pk if i % 2 else carol.pk,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert errors == [] and len(results) == n
    created = [uid for uid, (_at, was_created) in results if was_created]
    assert sorted(created) == sorted([bob.pk, carol.pk])  # exactly one first view each
    assert StatusView.objects.filter(post_id=pid).count() == 2
    for uid in (bob.pk, carol.pk):
        times = {at for u, (at, _c) in results if u == uid}
        assert len(times) == 1  # everyone is told the one stored time


@pytest.mark.django_db
def test_read_receipts_enabled_defaults_to_true_without_a_presence_row():
    alice, bob, carol = people(3)
    receipts(bob, False)
    UserPresence.objects.update_or_create(user_id=carol.pk, defaults={"privacy_settings": {}})
    assert read_receipts_enabled([alice.pk, bob.pk, carol.pk]) == {
        alice.pk: True,
        bob.pk: False,
        carol.pk: True,
    }
    assert read_receipts_enabled([]) == {}


@pytest.mark.django_db
def test_owner_sees_only_viewers_with_read_receipts_on():
    alice, bob, carol, dave = people(4)
    add_contacts(alice, bob, carol, dave)
    pid = post_id(alice)
    receipts(carol, False)
    for viewer in (bob, carol, dave):
        assert viewer.client.post(f"/status/posts/{pid}/views").status_code == 201

    body = alice.client.get(f"/status/posts/{pid}/views").json()

    assert body["receipts_enabled"] is True
    assert [v["viewer_user_id"] for v in body["views"]] == [bob.pk, dave.pk]


@pytest.mark.django_db
def test_an_owner_with_read_receipts_off_sees_no_receipts_reciprocity():
    alice, bob = people(2)
    add_contacts(alice, bob)
    pid = post_id(alice)
    assert bob.client.post(f"/status/posts/{pid}/views").status_code == 201
    receipts(alice, False)

    body = alice.client.get(f"/status/posts/{pid}/views").json()

    assert body == {"receipts_enabled": False, "views": []}
    assert StatusView.objects.filter(post_id=pid).count() == 1  # still recorded (for seen state)


@pytest.mark.django_db
def test_a_view_of_a_post_deleted_meanwhile_is_not_found(monkeypatch):
    from chatsite.api.errors import ApiError
    from status.models import StatusPost
    from status.services import posts as services

    alice, bob = people(2)
    add_contacts(alice, bob)
    pid = post_id(alice)
    stale = StatusPost.objects.get(pk=pid)
    StatusPost.objects.filter(pk=pid).delete()  # by the owner or the cleanup, after the read
    monkeypatch.setattr(services, "visible_post", lambda **_kw: stale)

    with pytest.raises(ApiError) as caught:
        view_record(user_id=bob.pk, post_id=pid)

    assert caught.value.code == "NOT_FOUND"
