"""POST /groups/{id}/invites and POST /groups/join: codes, expiry, uses, bans, capacity, rate limits."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from groups.models import Group, Invite, InviteRedemption, Participant
from tests.conftest import assert_api_error, client_for
from tests.factories import GroupFactory, UserFactory, group_add_members

pytestmark = pytest.mark.django_db


def create_invite(client, group, **body):
    resp = client.post(f"/groups/{group.pk}/invites", body, format="json")
    assert resp.status_code == 201, resp.content
    return resp.json()


def join(user, code: str):
    return client_for(user).post("/groups/join", {"code": code}, format="json")


def test_owner_creates_an_invite_with_the_default_lifetime():
    owner = UserFactory()
    group = GroupFactory(owner=owner)
    before = timezone.now()
    body = create_invite(client_for(owner), group)
    assert len(body["code"]) >= 32
    assert body["max_uses"] is None and body["uses"] == 0
    invite = Invite.objects.get(code=body["code"])
    assert timedelta(hours=71, minutes=59) < invite.expires_at - before <= timedelta(hours=72, seconds=5)


def test_invite_creation_rules():
    owner, admin, member = UserFactory(), UserFactory(), UserFactory()
    group = GroupFactory(owner=owner)
    group_add_members(group, admin, role="admin")
    group_add_members(group, member)
    body = create_invite(client_for(admin), group, max_uses=3, expires_in_seconds=600)
    assert body["max_uses"] == 3
    resp = client_for(member).post(f"/groups/{group.pk}/invites", {}, format="json")
    assert_api_error(resp, code="PERMISSION_DENIED", status=403)
    for bad in (
        {"max_uses": 0},
        {"expires_in_seconds": 10},
        {"expires_in_seconds": 73 * 3600},
        {"max_uses": "2"},
    ):
        resp = client_for(owner).post(f"/groups/{group.pk}/invites", bad, format="json")
        assert_api_error(resp, code="VALIDATION_ERROR", status=400)


def test_join_by_code_then_again_is_idempotent():
    owner, joiner = UserFactory(), UserFactory()
    group = GroupFactory(owner=owner)
    code = create_invite(client_for(owner), group, max_uses=2)["code"]
    epoch = Group.objects.get(pk=group.pk).group_epoch

    resp = join(joiner, code)

    assert resp.status_code == 201, resp.content
    assert resp.json()["id"] == str(group.pk)
    assert resp.json()["role"] == "member"
    assert resp.json()["member_count"] == 2
    assert resp.json()["group_epoch"] == epoch + 1
    again = join(joiner, code)
    assert again.status_code == 200
    invite = Invite.objects.get(code=code)
    assert invite.uses == 1
    assert list(InviteRedemption.objects.filter(invite=invite).values_list("user_id", flat=True)) == [
        joiner.pk
    ]
    # The owner "joining" by its own invite consumes nothing either.
    assert join(owner, code).status_code == 200
    assert Invite.objects.get(code=code).uses == 1


def test_expired_invite_is_gone():
    owner = UserFactory()
    group = GroupFactory(owner=owner)
    code = create_invite(client_for(owner), group)["code"]
    Invite.objects.filter(code=code).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_api_error(join(UserFactory(), code), code="GONE", status=410)


def test_used_up_invite_is_max_uses():
    owner = UserFactory()
    group = GroupFactory(owner=owner)
    code = create_invite(client_for(owner), group, max_uses=1)["code"]
    assert join(UserFactory(), code).status_code == 201
    assert_api_error(join(UserFactory(), code), code="MAX_USES", status=409)
    assert Invite.objects.get(code=code).uses == 1


def test_banned_user_cannot_join():
    owner, banned = UserFactory(), UserFactory()
    group = GroupFactory(owner=owner)
    client_for(owner).post(f"/groups/{group.pk}/bans", {"user_id": banned.pk}, format="json")
    code = create_invite(client_for(owner), group)["code"]
    assert_api_error(join(banned, code), code="BANNED", status=403)
    assert Invite.objects.get(code=code).uses == 0


def test_full_group_refuses_and_consumes_no_use(settings):
    settings.GROUP_MAX_PARTICIPANTS = 2
    owner = UserFactory()
    group = GroupFactory(owner=owner)
    code = create_invite(client_for(owner), group)["code"]
    assert join(UserFactory(), code).status_code == 201
    assert_api_error(join(UserFactory(), code), code="GROUP_FULL", status=409)
    assert Invite.objects.get(code=code).uses == 1
    assert Participant.objects.filter(group=group).count() == 2


def test_unknown_code_is_not_found():
    assert_api_error(join(UserFactory(), "no-such-code"), code="NOT_FOUND", status=404)


def test_creation_and_redemption_are_rate_limited(settings):
    settings.GROUP_INVITE_CREATES_PER_USER_PER_HOUR = 2
    settings.GROUP_INVITE_REDEEMS_PER_USER_PER_HOUR = 2
    owner, joiner = UserFactory(), UserFactory()
    group = GroupFactory(owner=owner)
    owner_client = client_for(owner)
    code = create_invite(owner_client, group)["code"]
    create_invite(owner_client, group)
    resp = owner_client.post(f"/groups/{group.pk}/invites", {}, format="json")
    body = assert_api_error(resp, code="RATE_LIMITED", status=429)
    assert body["retry_in_seconds"] >= 1
    assert resp["X-Retry-After"]

    assert join(joiner, "wrong").status_code == 404
    assert join(joiner, code).status_code == 201
    assert_api_error(join(joiner, code), code="RATE_LIMITED", status=429)
