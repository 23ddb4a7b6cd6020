"""Status, presence and orphaned-row checks (seed 000) count exactly the offending rows. Orphans
are impossible while the foreign keys are enforced; they are made here with the foreign-key
triggers skipped (`session_replication_role = replica`), as a restore or manual SQL would."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from dm.models import Delivery
from groups.models import Delivery as GroupDelivery
from presence.models import UserPresence
from status.models import StatusAudience, StatusPost, StatusView
from tests.factories import DeviceFactory, MessageFactory, UserFactory
from tests.ops.integrity.conftest import (
    delete_skipping_foreign_keys,
    insert_group_message,
    samples,
    violations,
)

pytestmark = pytest.mark.django_db


def _post(owner, *, expires_in: timedelta) -> StatusPost:
    return StatusPost.objects.create(
        owner=owner, ciphertext="b3BhcXVl", audience_mode="contacts", expires_at=timezone.now() + expires_in
    )


def test_expired_posts_past_the_cleanup_grace_are_counted():
    owner = UserFactory()
    stale = _post(owner, expires_in=-timedelta(hours=1))
    _post(owner, expires_in=-timedelta(minutes=1))  # within INTEGRITY_STATUS_EXPIRED_GRACE_S
    _post(owner, expires_in=timedelta(hours=1))

    assert samples("status_posts_expired_uncleaned") == [str(stale.pk)]


def _presence(*, online: bool, seen_ago: timedelta | None) -> UserPresence:
    last_seen = None if seen_ago is None else timezone.now() - seen_ago
    return UserPresence.objects.create(user=UserFactory(), device_online=online, last_seen_at=last_seen)


def test_users_online_with_an_old_last_seen_are_stuck():
    stuck = _presence(online=True, seen_ago=timedelta(hours=1))
    never = _presence(online=True, seen_ago=None)
    _presence(online=True, seen_ago=timedelta(seconds=30))
    _presence(online=False, seen_ago=timedelta(days=3))

    assert sorted(samples("presence_stuck_online")) == sorted([str(stuck.pk), str(never.pk)])


def test_presence_threshold_is_the_setting(settings):
    _presence(online=True, seen_ago=timedelta(seconds=90))
    assert violations("presence_stuck_online") == 0
    settings.INTEGRITY_PRESENCE_STUCK_AFTER_S = 60

    assert violations("presence_stuck_online") == 1


def test_dm_delivery_rows_of_a_deleted_message_are_orphans():
    gone, kept = MessageFactory(), MessageFactory()
    orphans = Delivery.objects.filter(message=gone).count()
    assert orphans >= 1 and violations("orphaned_dm_delivery") == 0
    delete_skipping_foreign_keys("dm_messages", gone.pk)

    assert violations("orphaned_dm_delivery") == orphans
    assert Delivery.objects.filter(message=kept).exists()


def test_status_audience_and_views_of_a_deleted_post_are_orphans():
    owner, viewer = UserFactory(), UserFactory()
    gone, kept = _post(owner, expires_in=timedelta(hours=1)), _post(owner, expires_in=timedelta(hours=1))
    for post in (gone, kept):
        StatusAudience.objects.create(post=post, viewer=viewer)
        StatusView.objects.create(post=post, viewer=viewer)
    assert violations("orphaned_status_audience") == violations("orphaned_status_views") == 0
    delete_skipping_foreign_keys("status_posts", gone.pk)

    assert violations("orphaned_status_audience") == 1
    assert violations("orphaned_status_views") == 1


def test_group_delivery_positions_on_a_deleted_message_are_orphans(group):
    device = DeviceFactory()
    message = insert_group_message(group.pk, epoch=1, seq=1)
    position = GroupDelivery.objects.create(group=group, device=device, message_id=message, acked_seq=1)
    assert violations("orphaned_group_delivery") == 0
    delete_skipping_foreign_keys("group_messages", message)

    assert samples("orphaned_group_delivery") == [str(position.pk)]


def test_messages_of_a_deleted_conversation_are_orphans():
    gone, kept = MessageFactory(), MessageFactory()
    delete_skipping_foreign_keys("dm_conversations", gone.conversation_id)

    assert samples("orphaned_dm_messages") == [str(gone.pk)]
    assert kept.conversation_id != gone.conversation_id
