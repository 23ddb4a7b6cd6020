"""Each "view rows" link of the dashboard lists exactly the check's violations: for every check in
ops.dashboard.selectors.OFFENDING_ROWS, on data holding offending and healthy rows, the linked
changelist's result count equals the count the check itself finds (the condition is written twice,
in the registry's SQL and in the admin filter; this keeps them the same)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from dm.models import Delivery, KeyBundle
from dm.services.devices import device_revoke
from groups.models import Participant
from ops.dashboard import selectors
from presence.models import UserPresence
from status.models import StatusPost
from tests.factories import (
    ConversationFactory,
    DeviceFactory,
    GroupFactory,
    MessageFactory,
    UserFactory,
    group_add_members,
)
from tests.ops.integrity.conftest import drop_constraint, insert_group_message, sql, violations

pytestmark = pytest.mark.django_db


def _groups_without_owner():
    for _ in range(2):
        group = GroupFactory()
        Participant.objects.filter(group=group, role="owner").update(role="admin")
    GroupFactory()


def _groups_over_capacity():
    full, over = GroupFactory(), GroupFactory()
    for group in (full, over):
        sql("UPDATE groups SET max_participants = 2 WHERE id = %s", [group.pk])
        group_add_members(group, UserFactory())
    sql(
        "INSERT INTO group_participants (role, is_banned, joined_at, joined_seq, group_id, user_id) "
        "VALUES ('member', false, now(), 0, %s, %s), ('member', true, now(), 0, %s, %s)",
        [over.pk, UserFactory().pk, full.pk, UserFactory().pk],
    )


def _invites_over_max_uses():
    group = GroupFactory()
    drop_constraint("group_invites", "ck_group_invites_uses")
    for code, max_uses, uses in (("full", 2, 2), ("unlimited", None, 50), ("over", 2, 3), ("over2", 1, 5)):
        sql(
            "INSERT INTO group_invites (code, created_at, expires_at, max_uses, uses, group_id) "
            "VALUES (%s, now(), now() + interval '1 day', %s, %s, %s)",
            [code, max_uses, uses, group.pk],
        )


def _expired_posts():
    owner = UserFactory()
    for expires_in in (-timedelta(hours=2), -timedelta(hours=1), -timedelta(seconds=30), timedelta(hours=1)):
        StatusPost.objects.create(
            owner=owner,
            ciphertext="b3BhcXVl",
            audience_mode="contacts",
            expires_at=timezone.now() + expires_in,
        )


def _stuck_presence():
    for online, seen_ago in (
        (True, timedelta(hours=1)),
        (True, None),
        (True, timedelta(seconds=5)),
        (False, timedelta(days=3)),
    ):
        last_seen = None if seen_ago is None else timezone.now() - seen_ago
        UserPresence.objects.create(user=UserFactory(), device_online=online, last_seen_at=last_seen)


def _prekey_pools():
    for n in (3, 7, 12):
        DeviceFactory(one_time_prekeys=n)
    revoked = DeviceFactory(one_time_prekeys=1)
    device_revoke(device=revoked, by_user=revoked.user)


def _stale_signed_prekeys():
    now = timezone.now()
    old, recent, revoked = DeviceFactory(), DeviceFactory(), DeviceFactory()
    KeyBundle.objects.filter(device__in=[old, revoked]).update(
        signed_prekey_uploaded_at=now - timedelta(days=91)
    )
    KeyBundle.objects.filter(device=recent).update(signed_prekey_uploaded_at=now - timedelta(days=89))
    sql("UPDATE e2ee_devices SET status = 'revoked', revoked_at = now() WHERE device_id = %s", [revoked.pk])


def _undelivered():
    # The stale message has two unacknowledged copies: the check counts messages, not copies.
    sender = DeviceFactory()
    recipient = DeviceFactory()
    DeviceFactory(user=recipient.user)
    stale = MessageFactory(
        sender_device=sender, conversation=ConversationFactory(user=sender.user, other=recipient.user)
    )
    delivered, fresh = MessageFactory(), MessageFactory()
    ten_minutes_ago = timezone.now() - timedelta(minutes=10)
    Delivery.objects.filter(message__in=[stale, delivered]).update(created_at=ten_minutes_ago)
    Delivery.objects.filter(message=delivered).update(delivered_at=timezone.now())
    assert Delivery.objects.filter(message=stale, delivered_at__isnull=True).count() == 2
    assert Delivery.objects.filter(message=fresh, delivered_at__isnull=True).exists()


def _unacked_sender_keys():
    group = GroupFactory()
    sender, recipient = DeviceFactory(), DeviceFactory()
    message = insert_group_message(group.pk, epoch=1, seq=1, proto=11, device_id=sender.pk)
    key = sql(
        "INSERT INTO group_sender_keys (group_epoch, sender_key_id, rotated_at, group_id, message_id, "
        "sender_device_id, sender_user_id) VALUES (1, 'k1', now(), %s, %s, %s, %s) RETURNING id",
        [group.pk, message, sender.pk, sender.user_id],
    )[0][0]
    drop_constraint("group_sender_key_envelopes", "uq_group_sender_key_envelopes")
    for minutes_ago, acked in ((10, False), (20, False), (10, True), (1, False)):
        sql(
            "INSERT INTO group_sender_key_envelopes (recipient_user_id, message_type, ciphertext, "
            "created_at, acked_at, device_id, sender_key_id) VALUES (%s, 0, 'opaque', "
            "now() - make_interval(mins => %s), CASE WHEN %s THEN now() END, %s, %s)",
            [recipient.user_id, minutes_ago, acked, recipient.pk, key],
        )


STATES = {
    "groups_without_owner": _groups_without_owner,
    "groups_over_capacity": _groups_over_capacity,
    "group_invites_over_max_uses": _invites_over_max_uses,
    "status_posts_expired_uncleaned": _expired_posts,
    "presence_stuck_online": _stuck_presence,
    "otpk_pool_critical": _prekey_pools,
    "otpk_pool_low": _prekey_pools,
    "signed_prekey_stale": _stale_signed_prekeys,
    "dm_undelivered_stale": _undelivered,
    "sender_keys_unacked": _unacked_sender_keys,
}


def test_every_linked_check_has_a_state_here():
    assert set(STATES) == set(selectors.OFFENDING_ROWS)


@pytest.mark.parametrize("check_name", sorted(STATES))
def test_the_linked_list_holds_exactly_the_checks_violations(admin_client, check_name):
    STATES[check_name]()
    expected = violations(check_name)

    response = admin_client.get(selectors._changelist_url(check_name))

    assert expected > 0
    assert response.status_code == 200
    assert response.context_data["cl"].result_count == expected


def test_checks_whose_rows_no_filter_matches_have_no_link():
    for check_name in (
        "group_participants_duplicate",
        "dm_messages_duplicate",
        "group_messages_duplicate",
        "group_messages_unexpected_epoch",
        "identity_key_changes_burst",
    ):
        assert selectors._changelist_url(check_name) is None, check_name
