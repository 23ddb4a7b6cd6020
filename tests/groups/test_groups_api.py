"""POST/GET /groups, GET/PATCH /groups/{id}: create, list, detail with members' devices, rename."""

from __future__ import annotations

import uuid

import pytest

from dm.models import Device
from groups.models import Group, Participant
from tests.conftest import assert_api_error, client_for
from tests.dm.helpers import add_device, party
from tests.factories import GroupFactory, UserFactory, group_add_members

pytestmark = pytest.mark.django_db


def test_create_makes_the_caller_owner_and_first_member():
    user = UserFactory()
    resp = client_for(user).post("/groups", {"title": "  Climbing  "}, format="json")
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["title"] == "Climbing"
    assert body["role"] == "owner"
    assert body["member_count"] == 1
    assert body["max_participants"] == 100
    assert body["group_epoch"] >= 1
    group = Group.objects.get(pk=body["id"])
    assert Participant.objects.get(group=group).user_id == user.pk


@pytest.mark.parametrize("title", ["", "   ", "x" * 129])
def test_create_refuses_a_bad_title(title):
    resp = client_for(UserFactory()).post("/groups", {"title": title}, format="json")
    assert_api_error(resp, code="VALIDATION_ERROR", status=400)


def test_list_shows_my_groups_with_my_role_only():
    me, other = UserFactory(), UserFactory()
    mine = GroupFactory(owner=me)
    joined = GroupFactory(owner=other)
    group_add_members(joined, me)
    GroupFactory(owner=other)  # not mine
    banned_from = GroupFactory(owner=other)
    group_add_members(banned_from, me)
    Participant.objects.filter(group=banned_from, user=me).update(is_banned=True, role="member")

    resp = client_for(me).get("/groups")

    assert resp.status_code == 200
    roles = {g["id"]: g["role"] for g in resp.json()["groups"]}
    assert roles == {str(mine.pk): "owner", str(joined.pk): "member"}


def test_detail_lists_members_with_their_active_devices():
    owner = party()
    second_device = add_device(owner.user, name="laptop")
    bob = party()
    group = GroupFactory(owner=owner.user)
    group_add_members(group, bob.user)
    no_device = UserFactory()
    group_add_members(group, no_device)

    resp = owner.client.get(f"/groups/{group.pk}")

    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert body["member_count"] == 3
    members = {m["user_id"]: m for m in body["members"]}
    assert [m["user_id"] for m in body["members"]] == [owner.user.pk, bob.user.pk, no_device.pk]
    assert members[owner.user.pk]["role"] == "owner"
    assert members[owner.user.pk]["username"] == owner.user.username
    assert set(members[owner.user.pk]["devices"]) == {owner.device_id, second_device.device_id}
    assert members[bob.user.pk]["devices"] == [bob.device_id]
    assert members[no_device.pk]["devices"] == []
    # Public keys beside the ids: a member checks an envelope's Olm sender without claiming a
    # one-time prekey of the sender's (GET /e2ee/bundles would).
    bob_device = Device.objects.get(pk=bob.device_id)
    assert members[bob.user.pk]["device_keys"] == [
        {
            "device_id": bob.device_id,
            "identity_key": bob_device.identity_key,
            "signing_key": bob_device.signing_key,
        }
    ]


def test_non_members_get_not_member_and_unknown_groups_not_found():
    group = GroupFactory()
    stranger = client_for(UserFactory())
    assert_api_error(stranger.get(f"/groups/{group.pk}"), code="NOT_MEMBER", status=403)
    assert_api_error(
        stranger.patch(f"/groups/{group.pk}", {"title": "mine now"}, format="json"),
        code="NOT_MEMBER",
        status=403,
    )
    assert_api_error(stranger.get(f"/groups/{uuid.uuid4()}"), code="NOT_FOUND", status=404)


def test_admins_and_owner_rename_members_cannot():
    owner, admin, member = UserFactory(), UserFactory(), UserFactory()
    group = GroupFactory(owner=owner)
    group_add_members(group, admin, role="admin")
    group_add_members(group, member)

    resp = client_for(admin).patch(f"/groups/{group.pk}", {"title": "Renamed"}, format="json")
    assert resp.status_code == 200, resp.content
    assert resp.json()["title"] == "Renamed"
    assert resp.json()["role"] == "admin"
    resp = client_for(owner).patch(f"/groups/{group.pk}", {"title": "Again"}, format="json")
    assert resp.status_code == 200
    resp = client_for(member).patch(f"/groups/{group.pk}", {"title": "Nope"}, format="json")
    assert_api_error(resp, code="PERMISSION_DENIED", status=403)
    assert Group.objects.get(pk=group.pk).title == "Again"


def test_groups_are_off_when_the_flag_is(settings):
    settings.GROUPS_ENABLED = False
    resp = client_for(UserFactory()).get("/groups")
    body = assert_api_error(resp, code="FEATURE_DISABLED", status=403)
    assert body["feature"] == "groups"


def test_anonymous_is_unauthenticated(api_client):
    assert_api_error(api_client.get("/groups"), code="UNAUTHENTICATED", status=401)
