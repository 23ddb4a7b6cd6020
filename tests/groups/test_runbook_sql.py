"""Seed 000 (Groups runbook): every SQL query about groups runs unchanged against our schema (only
the <placeholders> are filled in, as an on-call engineer would in psql, and trailing spaces
dropped) and answers sensibly."""

from __future__ import annotations

from datetime import timedelta

import pytest

from groups.models import Invite, Participant
from groups.services.invites import invite_create, invite_redeem
from tests.factories import GroupFactory, UserFactory, group_add_members
from tests.runbook import run_runbook_sql

pytestmark = pytest.mark.django_db

CAPACITY = """
SELECT
    g.id,
    g.title,
    COUNT(gp.user_id) as current_count,
    g.max_participants,
    g.group_epoch
FROM groups g
LEFT JOIN group_participants gp ON g.id = gp.group_id AND gp.is_banned = false
WHERE g.id = '<group_id>'
GROUP BY g.id;
"""

DUPLICATES = """
SELECT group_id, user_id, COUNT(*)
FROM group_participants
GROUP BY group_id, user_id
HAVING COUNT(*) > 1;
"""

OWNER = """
SELECT g.id, g.title, gp.user_id, gp.role
FROM groups g
JOIN group_participants gp ON g.id = gp.group_id
WHERE g.id = '<group_id>' AND gp.role = 'owner';
"""

PROMOTE = """
UPDATE group_participants
SET role = 'owner'
WHERE group_id = '<group_id>' AND user_id = <admin_user_id>;
"""

EPOCHS = """
SELECT
    g.id,
    g.group_epoch,
    COUNT(DISTINCT gm.group_epoch) as message_epochs,
    MIN(gm.created_at) as oldest_message,
    MAX(gm.created_at) as newest_message
FROM groups g
LEFT JOIN group_messages gm ON g.id = gm.group_id
WHERE g.id = '<group_id>'
GROUP BY g.id, g.group_epoch;
"""

SENDER_KEYS = """
SELECT
    gsk.group_id,
    gsk.sender_user_id,
    gsk.sender_device_id,
    gsk.group_epoch,
    gsk.sender_key_id,
    gsk.rotated_at
FROM group_sender_keys gsk
WHERE gsk.group_id = '<group_id>'
  AND gsk.group_epoch = <current_epoch>;
"""

DISTRIBUTIONS = """
  SELECT * FROM group_messages
  WHERE group_id = '<group_id>'
    AND proto = 11  -- sender-key distribution
    AND sender_device_id = '<device_id>'
  ORDER BY created_at DESC LIMIT 10;
"""

INVITE_STATUS = """
SELECT
    gi.id,
    gi.code,
    gi.expires_at,
    gi.max_uses,
    gi.uses,
    gi.created_at,
    CASE
        WHEN gi.expires_at < NOW() THEN 'expired'
        WHEN gi.max_uses IS NOT NULL AND gi.uses >= gi.max_uses THEN 'maxed'
        ELSE 'active'
    END as status
FROM group_invites gi
WHERE gi.code = '<invite_code>';
"""

INVITE_FOR_UPDATE = """
SELECT code, uses, max_uses, created_at
FROM group_invites
WHERE code = '<invite_code>'
FOR UPDATE;  -- Lock row
"""

MESSAGE_RATE = """
SELECT
    sender_user_id,
    COUNT(*) as message_count,
    MIN(created_at) as first_message,
    MAX(created_at) as last_message
FROM group_messages
WHERE created_at >= NOW() - INTERVAL '1 minute'
GROUP BY sender_user_id
HAVING COUNT(*) >= 40;  -- GROUP_MESSAGE_RATE_PER_USER_PER_MIN
"""

INDEXES = """
  SELECT indexname, indexdef
  FROM pg_indexes
  WHERE tablename IN ('group_messages', 'group_participants', 'status_posts');
"""

DELIVERY_ORPHANS = """
SELECT gd.*
FROM group_delivery gd
LEFT JOIN group_messages gm ON gd.message_id = gm.id
WHERE gm.id IS NULL;
"""

NO_OWNER = """
SELECT g.id, g.title
FROM groups g
LEFT JOIN group_participants gp ON g.id = gp.group_id AND gp.role = 'owner'
WHERE gp.user_id IS NULL;
"""

EPOCH_ISSUES = """
SELECT g.id, g.group_epoch, COUNT(DISTINCT gm.group_epoch) as message_epochs
FROM groups g
JOIN group_messages gm ON g.id = gm.group_id
GROUP BY g.id, g.group_epoch
HAVING COUNT(DISTINCT gm.group_epoch) > 1;
"""

MANY_GROUPS = """
SELECT user_id, COUNT(*) as group_count
FROM group_participants
WHERE is_banned = false
GROUP BY user_id
ORDER BY group_count DESC
LIMIT 10;
"""


@pytest.fixture
def group():
    owner, admin, member, banned = (UserFactory() for _ in range(4))
    g = GroupFactory(owner=owner, title="Runbook")
    group_add_members(g, admin, role="admin")
    group_add_members(g, member, banned)
    Participant.objects.filter(group=g, user=banned).update(is_banned=True)
    g.refresh_from_db()
    g.owner, g.admin, g.member = owner, admin, member
    return g


def test_capacity_check_counts_non_banned_members(group):
    ((gid, title, count, max_participants, epoch),) = run_runbook_sql(CAPACITY, group_id=group.pk)
    assert (gid, title, max_participants, epoch) == (group.pk, "Runbook", 100, group.group_epoch)
    # member_count still counts the banned one here (the fixture banned it by SQL behind the
    # service's back); the runbook's count is of non-banned rows.
    assert count == 3


def test_no_duplicate_participants_and_the_constraint_exists(group):
    assert run_runbook_sql(DUPLICATES) == []
    names = {row[0] for row in run_runbook_sql(INDEXES)}
    assert "uq_group_participants_group_user" in names


def test_owner_check_and_no_orphans(group):
    assert run_runbook_sql(OWNER, group_id=group.pk) == [(group.pk, "Runbook", group.owner.pk, "owner")]
    assert run_runbook_sql(NO_OWNER) == []


def test_manual_promotion_of_an_orphaned_group(group):
    Participant.objects.filter(group=group, role="owner").delete()
    assert run_runbook_sql(NO_OWNER) == [(group.pk, "Runbook")]
    assert run_runbook_sql(PROMOTE, group_id=group.pk, admin_user_id=group.admin.pk) == [(1,)]
    assert run_runbook_sql(NO_OWNER) == []
    assert run_runbook_sql(OWNER, group_id=group.pk)[0][2] == group.admin.pk


def test_epoch_distribution_and_sender_keys_of_a_quiet_group(group):
    ((gid, epoch, message_epochs, oldest, newest),) = run_runbook_sql(EPOCHS, group_id=group.pk)
    assert (gid, epoch, message_epochs, oldest, newest) == (group.pk, group.group_epoch, 0, None, None)
    assert run_runbook_sql(SENDER_KEYS, group_id=group.pk, current_epoch=group.group_epoch) == []
    assert (
        run_runbook_sql(DISTRIBUTIONS, group_id=group.pk, device_id="00000000-0000-0000-0000-000000000000")
        == []
    )
    assert run_runbook_sql(EPOCH_ISSUES) == []
    assert run_runbook_sql(MESSAGE_RATE) == []
    assert run_runbook_sql(DELIVERY_ORPHANS) == []


def test_invite_status_and_for_update(group):
    invite = invite_create(user_id=group.owner.pk, group_id=group.pk, max_uses=1)
    assert run_runbook_sql(INVITE_STATUS, invite_code=invite.code)[0][-1] == "active"
    invite_redeem(code=invite.code, user_id=UserFactory().pk)
    (row,) = run_runbook_sql(INVITE_STATUS, invite_code=invite.code)
    assert (row[3], row[4], row[-1]) == (1, 1, "maxed")
    Invite.objects.filter(pk=invite.pk).update(expires_at=invite.created_at - timedelta(days=1))
    assert run_runbook_sql(INVITE_STATUS, invite_code=invite.code)[0][-1] == "expired"
    ((code, uses, max_uses, _created),) = run_runbook_sql(INVITE_FOR_UPDATE, invite_code=invite.code)
    assert (code, uses, max_uses) == (invite.code, 1, 1)


def test_users_with_many_groups(group):
    busy = group.member
    for _ in range(3):
        group_add_members(GroupFactory(), busy)
    top = run_runbook_sql(MANY_GROUPS)
    assert top[0] == (busy.pk, 4)
    assert all(uid != group.owner.pk or n == 1 for uid, n in top)


def test_the_indexes_the_runbook_looks_for(group):
    names = {row[0] for row in run_runbook_sql(INDEXES)}
    assert {
        "uq_group_participants_group_user",
        "group_participants_user_idx",
        "group_participants_seniority",
        "group_messages_group_time",
        "group_messages_sender_time",
    } <= names
