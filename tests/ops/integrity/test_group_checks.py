"""The groups checks find exactly the offending rows of the runbook's queries (seed 000)."""

from __future__ import annotations

import pytest

from groups.models import Participant
from tests.factories import GroupFactory, UserFactory, group_add_members
from tests.ops.integrity.conftest import drop_constraint, insert_group_message, samples, sql, violations

pytestmark = pytest.mark.django_db


def test_groups_without_owner_counts_a_group_whose_owner_row_was_demoted(group):
    GroupFactory()  # a healthy group alongside
    assert violations("groups_without_owner") == 0
    Participant.objects.filter(group=group, role="owner").update(role="admin")

    assert violations("groups_without_owner") == 1
    assert samples("groups_without_owner") == [str(group.pk)]


def test_groups_over_capacity_counts_non_banned_participants_above_max(group):
    sql("UPDATE groups SET max_participants = 2 WHERE id = %s", [group.pk])
    group_add_members(group, UserFactory())  # 2 of 2: full, not over
    banned = UserFactory()
    sql(
        "INSERT INTO group_participants (role, is_banned, joined_at, joined_seq, group_id, user_id) "
        "VALUES ('member', true, now(), 0, %s, %s)",
        [group.pk, banned.pk],
    )
    assert violations("groups_over_capacity") == 0  # banned rows do not count

    # A third member written past the capacity check (member_count is not touched by raw SQL).
    sql(
        "INSERT INTO group_participants (role, is_banned, joined_at, joined_seq, group_id, user_id) "
        "VALUES ('member', false, now(), 0, %s, %s)",
        [group.pk, UserFactory().pk],
    )
    assert violations("groups_over_capacity") == 1


def test_duplicate_participants_are_counted_per_group_and_user(group):
    member = UserFactory()
    group_add_members(group, member)
    assert violations("group_participants_duplicate") == 0
    drop_constraint("group_participants", "uq_group_participants_group_user")
    for _ in range(2):  # the same pair three times is still one duplicate pair
        sql(
            "INSERT INTO group_participants (role, is_banned, joined_at, joined_seq, group_id, user_id) "
            "VALUES ('member', false, now(), 0, %s, %s)",
            [group.pk, member.pk],
        )

    assert violations("group_participants_duplicate") == 1
    assert samples("group_participants_duplicate") == [f"{group.pk}:{member.pk}"]


def test_invites_used_more_than_max_uses_are_counted(group):
    drop_constraint("group_invites", "ck_group_invites_uses")
    for code, max_uses, uses in (("full", 2, 2), ("unlimited", None, 50), ("over", 2, 3)):
        sql(
            "INSERT INTO group_invites (code, created_at, expires_at, max_uses, uses, group_id) "
            "VALUES (%s, now(), now() + interval '1 day', %s, %s, %s)",
            [code, max_uses, uses, group.pk],
        )

    assert violations("group_invites_over_max_uses") == 1


def test_messages_from_an_epoch_ahead_of_their_group_are_counted(group):
    other = GroupFactory()
    epoch = sql("SELECT group_epoch FROM groups WHERE id = %s", [group.pk])[0][0]
    sql("UPDATE groups SET group_epoch = %s WHERE id = %s", [epoch + 2, other.pk])
    # Messages over several past epochs are normal: not counted.
    insert_group_message(other.pk, epoch=epoch, seq=1)
    insert_group_message(other.pk, epoch=epoch + 2, seq=2)
    insert_group_message(group.pk, epoch=epoch, seq=1)
    assert violations("group_messages_unexpected_epoch") == 0

    insert_group_message(group.pk, epoch=epoch + 1, seq=2)  # a bump that was rolled back

    assert violations("group_messages_unexpected_epoch") == 1
    assert samples("group_messages_unexpected_epoch") == [str(group.pk)]


def test_group_messages_with_the_same_client_message_id_are_counted(group):
    from tests.factories import DeviceFactory

    device = DeviceFactory()
    first = insert_group_message(group.pk, epoch=1, seq=1, device_id=device.pk)
    assert violations("group_messages_duplicate") == 0
    drop_constraint("group_messages", "uq_group_messages_client_id")
    sql(
        "INSERT INTO group_messages (seq, group_epoch, proto, sender_key_id, client_message_id, "
        "ciphertext, created_at, group_id, sender_device_id) "
        "SELECT 2, group_epoch, proto, sender_key_id, client_message_id, ciphertext, now(), group_id, "
        "sender_device_id FROM group_messages WHERE id = %s",
        [first],
    )

    assert violations("group_messages_duplicate") == 1


def test_sender_key_envelopes_unacknowledged_after_five_minutes_are_counted(group):
    from tests.factories import DeviceFactory

    sender, recipient = DeviceFactory(), DeviceFactory()
    message = insert_group_message(group.pk, epoch=1, seq=1, proto=11, device_id=sender.pk)
    key = sql(
        "INSERT INTO group_sender_keys (group_epoch, sender_key_id, rotated_at, group_id, message_id, "
        "sender_device_id, sender_user_id) VALUES (1, 'k1', now(), %s, %s, %s, %s) RETURNING id",
        [group.pk, message, sender.pk, sender.user_id],
    )[0][0]
    # Three envelopes for one device keep the test short; the unique pair is beside the point.
    drop_constraint("group_sender_key_envelopes", "uq_group_sender_key_envelopes")
    for minutes_ago, acked in ((10, False), (10, True), (1, False)):
        sql(
            "INSERT INTO group_sender_key_envelopes (recipient_user_id, message_type, ciphertext, "
            "created_at, acked_at, device_id, sender_key_id) VALUES (%s, 0, 'opaque', "
            "now() - make_interval(mins => %s), CASE WHEN %s THEN now() END, %s, %s)",
            [recipient.user_id, minutes_ago, acked, recipient.pk, key],
        )

    assert violations("sender_keys_unacked") == 1
