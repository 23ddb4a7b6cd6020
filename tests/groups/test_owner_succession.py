"""A group never ends without an owner: when its owner's account is disabled or deleted, the most
senior admin (by joined_at) takes over, else the most senior member; a deleted owner alone in a
group takes the group with it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from chatsite.accounts.services import account_disable
from groups.models import EpochChange, Group, Participant
from tests.factories import GroupFactory, UserFactory, group_add_members

pytestmark = pytest.mark.django_db

ORPHANS = """
SELECT g.id, g.title
FROM groups g
LEFT JOIN group_participants gp ON g.id = gp.group_id AND gp.role = 'owner'
WHERE gp.user_id IS NULL;
"""


def owner_of(group) -> int | None:
    return Participant.objects.filter(group=group, role="owner").values_list("user_id", flat=True).first()


def orphans() -> list:
    with connection.cursor() as cursor:
        cursor.execute(ORPHANS)
        return cursor.fetchall()


def seniority(group, *users) -> None:
    """Make `users` join in this order (a day apart), whatever order they were added in."""
    start = timezone.now() - timedelta(days=30)
    for i, user in enumerate(users):
        Participant.objects.filter(group=group, user=user).update(joined_at=start + timedelta(days=i))


def test_disabled_owner_hands_over_to_the_most_senior_admin():
    owner, m_old, a_new, a_old = (UserFactory() for _ in range(4))
    group = GroupFactory(owner=owner)
    group_add_members(group, a_new, a_old, role="admin")
    group_add_members(group, m_old)
    seniority(group, owner, m_old, a_old, a_new)

    account_disable(user=owner)

    assert owner_of(group) == a_old.pk
    assert Participant.objects.get(group=group, user=owner).role == "member"
    assert Group.objects.get(pk=group.pk).member_count == 4
    assert orphans() == []


def test_without_admins_the_most_senior_member_takes_over():
    owner, m1, m2 = UserFactory(), UserFactory(), UserFactory()
    group = GroupFactory(owner=owner)
    group_add_members(group, m2, m1)
    seniority(group, owner, m1, m2)
    account_disable(user=owner)
    assert owner_of(group) == m1.pk


def test_a_disabled_member_is_passed_over_and_banned_users_never_inherit():
    owner, disabled_admin, banned, member = (UserFactory() for _ in range(4))
    group = GroupFactory(owner=owner)
    group_add_members(group, disabled_admin, role="admin")
    group_add_members(group, banned, member)
    seniority(group, owner, banned, disabled_admin, member)
    Participant.objects.filter(group=group, user=banned).update(is_banned=True)
    account_disable(user=disabled_admin)
    account_disable(user=owner)
    assert owner_of(group) == member.pk


def test_a_disabled_owner_alone_keeps_the_group():
    owner = UserFactory()
    group = GroupFactory(owner=owner)
    account_disable(user=owner)
    assert owner_of(group) == owner.pk


def test_deleted_owner_leaves_every_group_properly():
    owner, admin, member, other_owner = (UserFactory() for _ in range(4))
    owned = GroupFactory(owner=owner)
    group_add_members(owned, member)
    group_add_members(owned, admin, role="admin")
    seniority(owned, owner, member, admin)
    joined = GroupFactory(owner=other_owner)
    group_add_members(joined, owner)
    alone = GroupFactory(owner=owner)
    epoch = Group.objects.get(pk=owned.pk).group_epoch
    owner_id = owner.pk

    owner.delete()

    assert owner_of(owned) == admin.pk
    owned_now = Group.objects.get(pk=owned.pk)
    assert owned_now.member_count == 2 == Participant.objects.filter(group=owned).count()
    assert owned_now.group_epoch == epoch + 1
    assert EpochChange.objects.filter(group=owned, kind="member_removed", user_id=owner_id).exists()
    joined_now = Group.objects.get(pk=joined.pk)
    assert joined_now.member_count == 1 == Participant.objects.filter(group=joined).count()
    assert not Group.objects.filter(pk=alone.pk).exists()
    assert orphans() == []


def test_deleting_a_banned_user_leaves_the_count_alone():
    owner, banned = UserFactory(), UserFactory()
    group = GroupFactory(owner=owner)
    group_add_members(group, banned)
    Participant.objects.filter(group=group, user=banned).update(is_banned=True)
    Group.objects.filter(pk=group.pk).update(member_count=1)
    banned_id = banned.pk
    banned.delete()
    assert Group.objects.get(pk=group.pk).member_count == 1
    assert not Participant.objects.filter(user_id=banned_id).exists()
