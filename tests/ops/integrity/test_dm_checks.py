"""The dm checks (seed 001 thresholds, seed 004 duplicates) count exactly the offending rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from chatsite.accounts.models import SecurityEvent
from dm.models import Delivery, KeyBundle
from dm.services.devices import device_revoke
from tests.factories import DeviceFactory, MessageFactory, UserFactory
from tests.ops.integrity.conftest import drop_constraint, samples, sql, violations

pytestmark = pytest.mark.django_db


def test_otpk_pools_below_five_are_critical_and_below_ten_low():
    three = DeviceFactory(one_time_prekeys=3)
    seven = DeviceFactory(one_time_prekeys=7)
    DeviceFactory(one_time_prekeys=12)

    assert violations("otpk_pool_critical") == 1
    assert samples("otpk_pool_critical") == [str(three.pk)]
    assert sorted(samples("otpk_pool_low")) == sorted([str(three.pk), str(seven.pk)])


def test_revoked_devices_are_not_counted_for_low_pools():
    device = DeviceFactory(one_time_prekeys=1)
    device_revoke(device=device, by_user=device.user)

    assert violations("otpk_pool_critical") == 0


def test_otpk_thresholds_are_the_settings(settings):
    DeviceFactory(one_time_prekeys=7)
    settings.E2EE_OTPK_CRITICAL = 8

    assert violations("otpk_pool_critical") == 1


def test_signed_prekeys_older_than_ninety_days_are_counted():
    old, recent = DeviceFactory(), DeviceFactory()
    now = timezone.now()
    KeyBundle.objects.filter(device=old).update(signed_prekey_uploaded_at=now - timedelta(days=91))
    KeyBundle.objects.filter(device=recent).update(signed_prekey_uploaded_at=now - timedelta(days=89))

    assert samples("signed_prekey_stale") == [str(old.pk)]


def test_more_than_two_identity_key_changes_in_a_day_are_counted():
    now = timezone.now()
    burst, two, spread = UserFactory(), UserFactory(), UserFactory()
    for user, hours_ago in [(burst, 1), (burst, 2), (burst, 3), (two, 1), (two, 2)] + [
        (spread, 1),
        (spread, 2),
        (spread, 25),
    ]:
        SecurityEvent.objects.create(
            kind=SecurityEvent.Kind.IDENTITY_KEY_CHANGED,
            user=user,
            created_at=now - timedelta(hours=hours_ago),
        )
    SecurityEvent.objects.create(kind=SecurityEvent.Kind.LOGIN_FAILED, user=two, created_at=now)

    assert samples("identity_key_changes_burst") == [str(burst.pk)]


def test_messages_unacknowledged_after_five_minutes_are_counted():
    stale, delivered, fresh = MessageFactory(), MessageFactory(), MessageFactory()
    ten_minutes_ago = timezone.now() - timedelta(minutes=10)
    Delivery.objects.filter(message__in=[stale, delivered]).update(created_at=ten_minutes_ago)
    Delivery.objects.filter(message=delivered).update(delivered_at=timezone.now())
    assert Delivery.objects.filter(message=fresh, delivered_at__isnull=True).exists()

    assert samples("dm_undelivered_stale") == [str(stale.pk)]


def test_direct_messages_with_the_same_client_message_id_are_counted():
    message = MessageFactory()
    MessageFactory()
    assert violations("dm_messages_duplicate") == 0
    drop_constraint("dm_messages", "uq_dm_messages_client_id")
    sql(
        "INSERT INTO dm_messages (client_message_id, created_at, conversation_id, sender_device_id, "
        "sender_user_id) SELECT client_message_id, now(), conversation_id, sender_device_id, "
        "sender_user_id FROM dm_messages WHERE id = %s",
        [message.pk],
    )

    assert samples("dm_messages_duplicate") == [f"{message.sender_device_id}:{message.client_message_id}"]


def test_messages_of_deleted_devices_are_not_duplicates():
    """A deleted device leaves sender_device_id NULL; equal client ids of such rows are no offence."""
    message = MessageFactory()
    drop_constraint("dm_messages", "uq_dm_messages_client_id")
    sql(
        "INSERT INTO dm_messages (client_message_id, created_at, conversation_id, sender_device_id, "
        "sender_user_id) SELECT client_message_id, now(), conversation_id, NULL, sender_user_id "
        "FROM dm_messages WHERE id = %s",
        [message.pk],
    )
    sql("UPDATE dm_messages SET sender_device_id = NULL WHERE id = %s", [message.pk])

    assert violations("dm_messages_duplicate") == 0
