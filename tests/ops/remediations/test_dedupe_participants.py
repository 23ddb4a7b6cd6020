"""`manage.py dedupe_participants`: duplicates (possible only once uq_group_participants_group_user
is gone) are removed keeping the most recent row, member_count follows, the constraint is back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from chatsite.accounts.models import SecurityEvent
from groups.models import Group, Participant
from groups.services.remediations import unique_constraint_present
from tests.factories import GroupFactory, UserFactory, group_add_members
from tests.ops.remediations.helpers import audits, run

pytestmark = pytest.mark.django_db


def duplicated_member():
    """A member admitted three times, as a race would with the constraint dropped (and counted
    three times, as each admission moves member_count)."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE group_participants DROP CONSTRAINT uq_group_participants_group_user")
    group = GroupFactory()
    user = UserFactory()
    [first] = group_add_members(group, user)
    now = timezone.now()
    older = Participant.objects.create(group=group, user=user, joined_at=now - timedelta(hours=2))
    newest = Participant.objects.create(group=group, user=user, joined_at=now)
    Participant.objects.filter(pk=first.pk).update(joined_at=now - timedelta(hours=1))
    Group.objects.filter(pk=group.pk).update(member_count=4)
    return group, user, [older.pk, first.pk], newest.pk


def test_with_the_constraint_in_place_there_is_nothing_to_do():
    out = run("dedupe_participants", "--yes")

    assert "exists, so there can be no duplicates" in out
    assert audits(SecurityEvent.Kind.REMEDIATION_APPLIED) == []


def test_dry_run_lists_the_rows_to_delete_and_changes_nothing():
    group, user, doomed, kept = duplicated_member()

    out = run("dedupe_participants", "--dry-run")

    assert "uq_group_participants_group_user is MISSING" in out
    assert f"Keep participant {kept} " in out
    for pk in doomed:
        assert f"delete participant {pk} " in out
    assert "Would delete 2 duplicate row(s)." in out
    assert Participant.objects.filter(group=group, user=user).count() == 3
    assert not unique_constraint_present()


def test_keeps_the_most_recent_row_fixes_the_count_and_restores_the_constraint():
    group, user, doomed, kept = duplicated_member()

    out = run("dedupe_participants", "--yes", "--reason", "race in 1.2")

    assert list(Participant.objects.filter(group=group, user=user).values_list("pk", flat=True)) == [kept]
    assert Group.objects.get(pk=group.pk).member_count == 2  # the owner and the user
    assert unique_constraint_present()
    assert "Deleted 2 duplicate row(s); uq_group_participants_group_user restored." in out
    [event] = audits(SecurityEvent.Kind.REMEDIATION_APPLIED)
    assert sorted(r["participant_id"] for r in event.data["removed"]) == sorted(doomed)
    assert event.data["member_counts"] == {str(group.pk): [4, 2]}
    assert event.data["reason"] == "race in 1.2"


def duplicated_owner():
    """The owner's row is the older duplicate: a newer member row of the same user came later."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE group_participants DROP CONSTRAINT uq_group_participants_group_user")
    owner = UserFactory()
    group = GroupFactory(owner=owner)
    group_add_members(group, UserFactory())
    owner_row = Participant.objects.get(group=group, user=owner)
    Participant.objects.filter(pk=owner_row.pk).update(joined_at=timezone.now() - timedelta(days=1))
    newer = Participant.objects.create(group=group, user=owner, role=Participant.Role.MEMBER)
    return group, owner, owner_row.pk, newer.pk


def test_the_kept_row_takes_the_owner_role_of_an_older_duplicate():
    group, owner, owner_row, kept = duplicated_owner()

    dry = run("dedupe_participants", "--dry-run")
    out = run("dedupe_participants", "--yes")

    assert "it takes the highest role of its duplicates: member -> owner" in dry
    [row] = Participant.objects.filter(group=group, user=owner)
    assert (row.pk, row.role) == (kept, "owner")
    assert f"Participant {kept}: role member -> owner." in out
    [event] = audits(SecurityEvent.Kind.REMEDIATION_APPLIED)
    assert event.data["roles"] == [{"participant_id": kept, "from": "member", "to": "owner"}]


def test_a_banned_kept_row_stays_a_member_and_the_heir_becomes_owner():
    group, owner, owner_row, kept = duplicated_owner()
    Participant.objects.filter(pk=kept).update(is_banned=True, banned_at=timezone.now())
    heir = Participant.objects.get(group=group, role="member", is_banned=False)

    dry = run("dedupe_participants", "--dry-run")
    run("dedupe_participants", "--yes")

    assert f"group {group.pk} passes to its heir" in dry
    assert Participant.objects.get(pk=kept).role == "member"
    assert Participant.objects.get(pk=heir.pk).role == "owner"


def test_an_invalid_index_of_that_name_is_not_the_constraint_and_is_replaced():
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE group_participants DROP CONSTRAINT uq_group_participants_group_user")
        # What a failed CREATE UNIQUE INDEX CONCURRENTLY leaves behind.
        cursor.execute(
            "CREATE UNIQUE INDEX uq_group_participants_group_user ON group_participants (group_id, user_id)"
        )
        cursor.execute(
            "UPDATE pg_index SET indisvalid = false "
            "WHERE indexrelid = 'uq_group_participants_group_user'::regclass"
        )

    assert not unique_constraint_present()
    run("dedupe_participants", "--yes")
    assert unique_constraint_present()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_constraint "
            "WHERE conname = 'uq_group_participants_group_user' AND contype = 'u'"
        )
        assert cursor.fetchone() == (1,)
