"""groups.services.remediations: the operators' membership repairs as services (the commands and
admin actions over them are tested in tests/ops/remediations)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from chatsite.api.errors import ApiError
from groups.models import EpochChange, Group, Participant
from groups.selectors.members import owner_heir
from groups.services.remediations import group_owner_promote, group_owner_promote_plan, member_ban_everywhere
from tests.factories import GroupFactory, UserFactory, group_add_members

pytestmark = pytest.mark.django_db


def test_the_heir_is_the_most_senior_admin_even_when_a_member_joined_earlier():
    group = GroupFactory()
    member, admin_user = UserFactory(), UserFactory()
    group_add_members(group, member)
    group_add_members(group, admin_user, role="admin")
    Participant.objects.filter(group=group, user=member).update(joined_at=timezone.now() - timedelta(days=30))

    assert owner_heir(group_id=group.pk).user_id == admin_user.pk


def test_a_disabled_admin_is_passed_over_for_an_enabled_member():
    group = GroupFactory()
    member, admin_user = UserFactory(), UserFactory(disabled=True)
    group_add_members(group, member)
    group_add_members(group, admin_user, role="admin")

    assert owner_heir(group_id=group.pk).user_id == member.pk


def test_a_banned_user_is_never_promoted():
    group = GroupFactory()
    banned = UserFactory()
    [row] = group_add_members(group, banned)
    Participant.objects.filter(pk=row.pk).update(is_banned=True)
    Participant.objects.filter(group=group, role="owner").delete()

    with pytest.raises(ApiError) as plan_error:
        group_owner_promote_plan(group_id=group.pk)
    with pytest.raises(ApiError) as named_error:
        group_owner_promote(group_id=group.pk, user_id=banned.pk)

    assert plan_error.value.code == "OWNER_REQUIRED"
    assert named_error.value.code == "NOT_FOUND"


def test_ban_everywhere_releases_places_and_moves_epochs():
    abuser = UserFactory()
    groups = [GroupFactory(), GroupFactory()]
    for group in groups:
        group_add_members(group, abuser)
    before = {
        g.pk: (g.member_count, g.group_epoch) for g in Group.objects.filter(pk__in=[g.pk for g in groups])
    }

    bans = member_ban_everywhere(user_id=abuser.pk)

    assert sorted(b.outcome for b in bans) == ["banned", "banned"]
    for group in Group.objects.filter(pk__in=before):
        count, epoch = before[group.pk]
        assert (group.member_count, group.group_epoch) == (count - 1, epoch + 1)
        assert EpochChange.objects.filter(group=group, kind="member_removed", user_id=abuser.pk).exists()
    assert Participant.objects.filter(user=abuser, is_banned=True, banned_at__isnull=False).count() == 2


def test_ban_everywhere_hands_an_owned_group_to_its_heir_first():
    abuser, heir = UserFactory(), UserFactory()
    group = GroupFactory(owner=abuser)
    group_add_members(group, heir)

    [ban] = member_ban_everywhere(user_id=abuser.pk)

    assert (ban.previous_role, ban.outcome) == ("owner", "banned")
    assert Participant.objects.get(group=group, user=heir).role == "owner"
    assert Participant.objects.get(group=group, user=abuser).role == "member"


def test_duplicates_are_found_in_one_query_newest_first(django_assert_num_queries):
    from django.db import connection

    from groups.selectors.members import duplicate_participants

    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE group_participants DROP CONSTRAINT uq_group_participants_group_user")
    groups = [GroupFactory(), GroupFactory()]
    user = UserFactory()
    now = timezone.now()
    rows = {
        g.pk: [
            Participant.objects.create(group=g, user=user, joined_at=now - timedelta(hours=h))
            for h in (2, 0, 1)
        ]
        for g in groups
    }

    with django_assert_num_queries(1):
        found = duplicate_participants()

    assert {(d.kept.pk, tuple(p.pk for p in d.extra)) for d in found} == {
        (r[1].pk, (r[2].pk, r[0].pk)) for r in rows.values()
    }


def test_the_ban_everywhere_plan_says_what_the_ban_does_in_one_query(django_assert_num_queries):
    from groups.selectors.members import member_ban_everywhere_plan

    abuser = UserFactory()
    alone = GroupFactory(owner=abuser)  # nobody could inherit it
    owned = GroupFactory(owner=abuser)
    group_add_members(owned, UserFactory())
    joined = GroupFactory()
    group_add_members(joined, abuser)

    with django_assert_num_queries(1):
        plan = member_ban_everywhere_plan(user_id=abuser.pk)
    bans = member_ban_everywhere(user_id=abuser.pk)

    assert plan == bans
    assert {b.group_id: b.outcome for b in plan} == {
        str(alone.pk): "kept: sole member",
        str(owned.pk): "banned",
        str(joined.pk): "banned",
    }
