"""`manage.py promote_group_owner` and groups.services.remediations.group_owner_promote: an orphaned
group gets the most senior admin (by joined_at), or the named member, as owner; a dry run changes
nothing; one audit row with who and why."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError
from django.utils import timezone

from chatsite.accounts.models import SecurityEvent
from groups.models import Participant
from tests.factories import GroupFactory, UserFactory, group_add_members
from tests.ops.remediations.helpers import audits, run

pytestmark = pytest.mark.django_db


def orphaned_group():
    """A group whose owner row was deleted by hand, with two admins (the later-joined first) and a
    member who joined before both."""
    group = GroupFactory()
    member, late_admin, senior_admin = UserFactory(), UserFactory(), UserFactory()
    group_add_members(group, member)
    group_add_members(group, late_admin, senior_admin, role="admin")
    now = timezone.now()
    Participant.objects.filter(group=group, user=member).update(joined_at=now - timedelta(days=9))
    Participant.objects.filter(group=group, user=late_admin).update(joined_at=now - timedelta(days=1))
    Participant.objects.filter(group=group, user=senior_admin).update(joined_at=now - timedelta(days=5))
    Participant.objects.filter(group=group, role="owner").delete()
    return group, senior_admin, member


def owner_of(group):
    return Participant.objects.filter(group=group, role="owner").values_list("user_id", flat=True).first()


def test_dry_run_prints_the_senior_admin_and_changes_nothing():
    group, senior_admin, _ = orphaned_group()

    out = run("promote_group_owner", str(group.pk), "--dry-run")

    assert f"Would make {senior_admin.username} (user {senior_admin.pk}, admin" in out
    assert "Dry run: nothing changed." in out
    assert owner_of(group) is None
    assert audits(SecurityEvent.Kind.REMEDIATION_APPLIED) == []


def test_promotes_the_most_senior_admin_and_records_who_and_why():
    group, senior_admin, _ = orphaned_group()
    operator = UserFactory(is_staff=True)

    out = run(
        "promote_group_owner", str(group.pk), "--yes", "--by", operator.username, "--reason", "ticket 42"
    )

    assert owner_of(group) == senior_admin.pk
    assert f"{senior_admin.username} (user {senior_admin.pk}) is now the owner" in out
    [event] = audits(SecurityEvent.Kind.REMEDIATION_APPLIED)
    assert event.user_id == senior_admin.pk
    assert event.data["by"] == operator.pk
    assert event.data["reason"] == "ticket 42"
    assert event.data["remediation"] == "promote_group_owner"
    assert event.data["previous_role"] == "admin"


def test_a_named_member_is_promoted_instead():
    group, _, member = orphaned_group()

    run("promote_group_owner", str(group.pk), "--member", str(member.pk), "--yes")

    assert owner_of(group) == member.pk


def test_a_group_with_an_owner_is_refused_and_unchanged():
    group = GroupFactory()
    admin_user = UserFactory()
    group_add_members(group, admin_user, role="admin")

    with pytest.raises(CommandError, match="CONFLICT"):
        run("promote_group_owner", str(group.pk), "--yes")

    assert owner_of(group) == group.created_by_id
    assert Participant.objects.get(group=group, user=admin_user).role == "admin"


def test_without_yes_a_refusal_at_the_prompt_changes_nothing(monkeypatch):
    group, _, _ = orphaned_group()
    monkeypatch.setattr("builtins.input", lambda prompt: "no")

    with pytest.raises(CommandError, match="Aborted"):
        run("promote_group_owner", str(group.pk))

    assert owner_of(group) is None
