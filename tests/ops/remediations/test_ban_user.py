"""`manage.py ban_user` (ops.remediations.bans.user_ban): the account is disabled, every session
revoked, every socket force-disconnected, optionally every group ban; one ACCOUNT_BANNED audit row
with who and why; a dry run changes nothing."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.core.management import CommandError

from chatsite.accounts.models import SecurityEvent, Session
from groups.models import Participant
from ops.remediations.bans import user_ban
from tests.conftest import login
from tests.factories import GroupFactory, UserFactory, group_add_members
from tests.ops.remediations.helpers import audits, run
from tests.realtime.clients import assert_alive, new_user_and_token, open_ws, until_closed


def live_sessions(user) -> int:
    return Session.objects.filter(user=user, revoked_at__isnull=True).count()


def groups_of(abuser):
    """A group the abuser is a member of, one they own with an admin to inherit it, and one they
    own alone."""
    member_of = GroupFactory()
    group_add_members(member_of, abuser)
    owned = GroupFactory(owner=abuser)
    heir = UserFactory()
    group_add_members(owned, heir, role="admin")
    alone = GroupFactory(owner=abuser)
    return member_of, owned, heir, alone


@pytest.mark.django_db
def test_dry_run_prints_the_plan_and_changes_nothing():
    abuser = UserFactory()
    login(abuser), login(abuser)
    member_of, owned, _heir, alone = groups_of(abuser)

    out = run("ban_user", abuser.username, "--reason", "spam", "--groups", "--dry-run")

    assert f"Would ban {abuser.username} (user {abuser.pk}, active)" in out
    assert "revoke 2 live session(s)" in out
    assert f"group {member_of.pk} (member): banned" in out
    assert f"group {owned.pk} (owner): banned" in out
    assert f"group {alone.pk} (owner): kept: sole member" in out
    abuser.refresh_from_db()
    assert abuser.disabled is False
    assert live_sessions(abuser) == 2
    assert not Participant.objects.filter(user=abuser, is_banned=True).exists()
    assert audits(SecurityEvent.Kind.ACCOUNT_BANNED) == []


@pytest.mark.django_db
def test_a_reason_is_required():
    with pytest.raises(CommandError, match="--reason"):
        run("ban_user", UserFactory().username, "--yes")


@pytest.mark.django_db
def test_ban_disables_revokes_and_records_who_and_why():
    abuser, operator = UserFactory(), UserFactory(is_staff=True)
    login(abuser)

    out = run("ban_user", abuser.username, "--reason", "abuse burst", "--by", operator.username, "--yes")

    abuser.refresh_from_db()
    assert abuser.disabled is True
    assert live_sessions(abuser) == 0
    assert "1 session(s) revoked" in out
    [event] = audits(SecurityEvent.Kind.ACCOUNT_BANNED)
    assert (event.user_id, event.data["by"], event.data["reason"]) == (abuser.pk, operator.pk, "abuse burst")
    assert event.data["banned_from_groups"] is False


@pytest.mark.django_db
def test_with_groups_every_membership_becomes_a_ban_and_owned_groups_pass_to_their_heir():
    abuser = UserFactory()
    member_of, owned, heir, alone = groups_of(abuser)

    out = run("ban_user", abuser.username, "--reason", "spam", "--groups", "--yes")

    mine = {p.group_id: p for p in Participant.objects.filter(user=abuser)}
    assert mine[member_of.pk].is_banned and mine[owned.pk].is_banned
    assert Participant.objects.get(group=owned, user=heir).role == "owner"
    assert not mine[alone.pk].is_banned and mine[alone.pk].role == "owner"  # nobody to hand it to
    assert "2 group ban(s)" in out
    [event] = audits(SecurityEvent.Kind.ACCOUNT_BANNED)
    assert {g["group_id"]: g["outcome"] for g in event.data["groups"]} == {
        str(member_of.pk): "banned",
        str(owned.pk): "banned",
        str(alone.pk): "kept: sole member",
    }


@pytest.mark.django_db(transaction=True)
async def test_ban_force_disconnects_the_users_live_socket_and_no_one_elses():
    abuser, token = await new_user_and_token()
    _, bystander_token = await new_user_and_token()
    doomed, _ = await open_ws(token)
    bystander, _ = await open_ws(bystander_token)

    await database_sync_to_async(user_ban)(user=abuser, by=None, reason="abuse")

    code, _ = await until_closed(doomed, timeout=1.0)
    assert code == 4401
    await assert_alive(bystander)
    await doomed.disconnect()
    await bystander.disconnect()
