"""Group retention (groups.tasks.purge_group_messages): old messages and their sender keys go,
positions pointing at them are dropped first (no duplicates afterwards), idempotent, and the beat
schedule names registered tasks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from chatsite.celery import app
from groups.models import Delivery, GroupMessage, SenderKey, SenderKeyEnvelope
from groups.tasks import group_messages_purge, purge_group_messages
from tests.dm.helpers import party
from tests.groups.helpers import distribute, make_group, page, send

pytestmark = pytest.mark.django_db(transaction=True)

NOTHING = {"messages_deleted": 0, "positions_dropped": 0}


def age(group, *seqs: int, days: int) -> None:
    GroupMessage.objects.filter(group_id=group.pk, seq__in=seqs).update(
        created_at=timezone.now() - timedelta(days=days)
    )


def ack(reader, group, seq: int) -> dict:
    resp = reader.client.post(f"/groups/{group.pk}/ack", {"seq": seq}, format="json")
    assert resp.status_code == 200, resp.content
    return resp.json()


def seqs(body: dict) -> list[int]:
    return [m["seq"] for m in body["messages"]]


def group_with_history(old: int, new: int):
    """alice distributes a sender key (seq 1) and sends old + new messages; seq 1..old+1 are aged
    past retention."""
    alice, bob = party(), party()
    group = make_group(alice, bob)
    assert distribute(alice, group).status_code == 201
    for _ in range(old + new):
        assert send(alice, group).status_code == 201
    age(group, *range(1, old + 2), days=31)
    return alice, bob, group


@override_settings(GROUP_MESSAGE_RETENTION_DAYS=30)
def test_old_messages_go_and_new_ones_stay_with_their_sender_keys():
    _alice, bob, group = group_with_history(old=3, new=2)
    assert SenderKey.objects.count() == 1 and SenderKeyEnvelope.objects.count() == 1

    result = purge_group_messages.apply().get()

    assert result == {"messages_deleted": 4, "positions_dropped": 0}
    assert sorted(GroupMessage.objects.values_list("seq", flat=True)) == [5, 6]
    # The proto-11 distribution (seq 1) was old: its sender key and envelopes went with it.
    assert SenderKey.objects.count() == 0 and SenderKeyEnvelope.objects.count() == 0
    assert seqs(page(bob, group)) == [5, 6]


@override_settings(GROUP_MESSAGE_RETENTION_DAYS=30, GROUP_PURGE_BATCH_SIZE=2)
def test_positions_at_old_messages_are_dropped_and_the_device_reads_no_duplicates():
    alice, bob, group = group_with_history(old=3, new=2)
    # bob acknowledged up to an old message (seq 3); alice up to the newest one (seq 6).
    assert ack(bob, group, 3)["acked_seq"] == 3
    assert ack(alice, group, 6)["acked_seq"] == 6
    before = seqs(page(bob, group, since=3))
    assert before == [4, 5, 6]

    result = group_messages_purge()

    # Batches of 2: seq 1-2, then 3-4 (bob's position goes before its message), nothing more old.
    assert result == {"messages_deleted": 4, "positions_dropped": 1}
    assert not Delivery.objects.filter(device_id=bob.device_id).exists()
    assert Delivery.objects.get(device_id=alice.device_id).acked_seq == 6
    # Without a position bob reads from where he joined: only what he never acknowledged,
    # each message once.
    after = seqs(page(bob, group))
    assert after == [5, 6]
    assert set(after) <= set(before) and len(after) == len(set(after))
    assert all(seq > 3 for seq in after)
    # Acknowledging again writes a fresh position at a message that exists.
    assert ack(bob, group, 6)["acked_seq"] == 6


@override_settings(GROUP_MESSAGE_RETENTION_DAYS=30, GROUP_PURGE_BATCH_SIZE=2)
def test_a_second_run_deletes_nothing():
    _alice, bob, group = group_with_history(old=4, new=1)
    ack(bob, group, 2)

    first = group_messages_purge()
    second = group_messages_purge()

    assert first == {"messages_deleted": 5, "positions_dropped": 1}
    assert second == NOTHING
    assert sorted(GroupMessage.objects.values_list("seq", flat=True)) == [6]


@override_settings(GROUP_MESSAGE_RETENTION_DAYS=30, GROUP_PURGE_BATCH_SIZE=1, GROUP_PURGE_MAX_BATCHES=2)
def test_one_run_is_bounded_and_the_next_run_carries_on():
    group_with_history(old=3, new=0)  # seq 1..4 old

    assert group_messages_purge()["messages_deleted"] == 2
    assert group_messages_purge()["messages_deleted"] == 2
    assert group_messages_purge() == NOTHING
    assert not GroupMessage.objects.exists()


def test_the_defaults_and_the_beat_entry():
    assert settings.GROUP_MESSAGE_RETENTION_DAYS == 30
    assert settings.GROUP_PURGE_BATCH_SIZE == 1000
    entry = settings.CELERY_BEAT_SCHEDULE["groups-purge-messages"]
    assert entry == {"task": "groups.tasks.purge_group_messages", "schedule": 600.0}


def test_every_beat_entry_names_a_registered_task():
    app.loader.import_default_modules()
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert entry["task"] in app.tasks, f"beat entry {name} names no registered task"
