"""Members, roles, bans, leaving and ownership transfer: who may do what to whom, and what each
change does to member_count and the group's epoch."""

from __future__ import annotations

import uuid

import pytest

from groups.models import EpochChange, Group, Participant
from tests.conftest import assert_api_error, client_for
from tests.factories import GroupFactory, UserFactory, group_add_members

pytestmark = pytest.mark.django_db


def roles(group) -> dict[int, str]:
    return dict(Participant.objects.filter(group=group, is_banned=False).values_list("user_id", "role"))


def fresh(group) -> Group:
    return Group.objects.get(pk=group.pk)


def assert_count_consistent(group) -> None:
    assert fresh(group).member_count == Participant.objects.filter(group=group, is_banned=False).count()


@pytest.fixture
def cast():
    """A group with an owner, an admin and two members, and a client for each."""
    owner, admin, m1, m2 = (UserFactory() for _ in range(4))
    group = GroupFactory(owner=owner)
    group_add_members(group, admin, role="admin")
    group_add_members(group, m1, m2)
    clients = {name: client_for(u) for name, u in dict(owner=owner, admin=admin, m1=m1, m2=m2).items()}
    return group, dict(owner=owner, admin=admin, m1=m1, m2=m2), clients


def test_admin_adds_a_member_and_the_epoch_moves(cast):
    group, users, clients = cast
    newcomer = UserFactory()
    before = fresh(group).group_epoch

    resp = clients["admin"].post(f"/groups/{group.pk}/members", {"user_id": newcomer.pk}, format="json")

    assert resp.status_code == 201, resp.content
    assert resp.json()["user_id"] == newcomer.pk
    assert resp.json()["role"] == "member"
    assert fresh(group).member_count == 5
    assert fresh(group).group_epoch == before + 1
    assert EpochChange.objects.filter(group=group, kind="member_added", user_id=newcomer.pk).exists()
    # Adding again is idempotent.
    again = clients["owner"].post(f"/groups/{group.pk}/members", {"user_id": newcomer.pk}, format="json")
    assert again.status_code == 200
    assert fresh(group).member_count == 5
    assert fresh(group).group_epoch == before + 1


def test_members_cannot_add_and_unknown_users_are_not_found(cast):
    group, _users, clients = cast
    resp = clients["m1"].post(f"/groups/{group.pk}/members", {"user_id": UserFactory().pk}, format="json")
    assert_api_error(resp, code="PERMISSION_DENIED", status=403)
    resp = clients["admin"].post(f"/groups/{group.pk}/members", {"user_id": 987654321}, format="json")
    assert_api_error(resp, code="NOT_FOUND", status=404)
    resp = clients["admin"].post(f"/groups/{group.pk}/members", {"user_id": "12"}, format="json")
    assert_api_error(resp, code="VALIDATION_ERROR", status=400)
    assert_count_consistent(group)


def test_add_to_a_full_group_is_group_full(settings):
    settings.GROUP_MAX_PARTICIPANTS = 2
    owner = UserFactory()
    group = GroupFactory(owner=owner)
    group_add_members(group, UserFactory())
    resp = client_for(owner).post(f"/groups/{group.pk}/members", {"user_id": UserFactory().pk}, format="json")
    assert_api_error(resp, code="GROUP_FULL", status=409)
    assert fresh(group).member_count == 2


def test_removal_rules(cast):
    group, users, clients = cast
    url = f"/groups/{group.pk}/members/"
    # A member removes nobody; an admin removes no admin and not the owner.
    assert_api_error(clients["m1"].delete(url + str(users["m2"].pk)), code="PERMISSION_DENIED", status=403)
    assert_api_error(
        clients["admin"].delete(url + str(users["owner"].pk)), code="PERMISSION_DENIED", status=403
    )
    other_admin = UserFactory()
    group_add_members(group, other_admin, role="admin")
    assert_api_error(clients["admin"].delete(url + str(other_admin.pk)), code="PERMISSION_DENIED", status=403)
    # An admin removes a member; the owner removes an admin.
    epoch = fresh(group).group_epoch
    assert clients["admin"].delete(url + str(users["m1"].pk)).status_code == 204
    assert fresh(group).group_epoch == epoch + 1
    assert EpochChange.objects.filter(group=group, kind="member_removed", user_id=users["m1"].pk).exists()
    assert clients["owner"].delete(url + str(other_admin.pk)).status_code == 204
    assert set(roles(group)) == {users["owner"].pk, users["admin"].pk, users["m2"].pk}
    assert_count_consistent(group)
    # The owner cannot remove itself (that is leaving); a removed user is no longer a member.
    assert_api_error(clients["owner"].delete(url + str(users["owner"].pk)), code="OWNER_REQUIRED", status=409)
    assert_api_error(clients["admin"].delete(url + str(users["m1"].pk)), code="NOT_FOUND", status=404)
    assert_api_error(clients["m1"].get(f"/groups/{group.pk}"), code="NOT_MEMBER", status=403)


def test_ban_removes_and_keeps_out(cast):
    group, users, clients = cast
    epoch = fresh(group).group_epoch

    resp = clients["admin"].post(f"/groups/{group.pk}/bans", {"user_id": users["m1"].pk}, format="json")

    assert resp.status_code == 201, resp.content
    assert resp.json()["is_banned"] is True
    row = Participant.objects.get(group=group, user=users["m1"])
    assert row.is_banned and row.role == "member" and row.banned_at is not None
    assert fresh(group).member_count == 3
    assert fresh(group).group_epoch == epoch + 1
    assert_count_consistent(group)
    # Banned: not a member, cannot be added back.
    assert_api_error(clients["m1"].get(f"/groups/{group.pk}"), code="NOT_MEMBER", status=403)
    resp = clients["owner"].post(f"/groups/{group.pk}/members", {"user_id": users["m1"].pk}, format="json")
    assert_api_error(resp, code="BANNED", status=403)
    # Banning again is idempotent; admins cannot ban the owner or admins; members cannot ban.
    resp = clients["admin"].post(f"/groups/{group.pk}/bans", {"user_id": users["m1"].pk}, format="json")
    assert resp.status_code == 201
    assert fresh(group).member_count == 3
    resp = clients["admin"].post(f"/groups/{group.pk}/bans", {"user_id": users["owner"].pk}, format="json")
    assert_api_error(resp, code="PERMISSION_DENIED", status=403)
    resp = clients["m2"].post(f"/groups/{group.pk}/bans", {"user_id": users["admin"].pk}, format="json")
    assert_api_error(resp, code="PERMISSION_DENIED", status=403)
    # The owner can ban an admin, who loses the role.
    resp = clients["owner"].post(f"/groups/{group.pk}/bans", {"user_id": users["admin"].pk}, format="json")
    assert resp.status_code == 201
    assert Participant.objects.get(group=group, user=users["admin"]).role == "member"
    assert_count_consistent(group)


def test_banning_a_non_member_keeps_them_from_joining(cast):
    group, _users, clients = cast
    outsider = UserFactory()
    epoch = fresh(group).group_epoch
    resp = clients["owner"].post(f"/groups/{group.pk}/bans", {"user_id": outsider.pk}, format="json")
    assert resp.status_code == 201
    assert fresh(group).member_count == 4
    assert fresh(group).group_epoch == epoch
    resp = clients["owner"].post(f"/groups/{group.pk}/members", {"user_id": outsider.pk}, format="json")
    assert_api_error(resp, code="BANNED", status=403)


def test_leave(cast):
    group, users, clients = cast
    assert clients["m1"].post(f"/groups/{group.pk}/leave").status_code == 204
    assert users["m1"].pk not in roles(group)
    assert_count_consistent(group)
    assert_api_error(clients["m1"].post(f"/groups/{group.pk}/leave"), code="NOT_MEMBER", status=403)
    assert_api_error(clients["owner"].post(f"/groups/{group.pk}/leave"), code="OWNER_REQUIRED", status=409)
    # Removing yourself is leaving too.
    assert clients["m2"].delete(f"/groups/{group.pk}/members/{users['m2'].pk}").status_code == 204
    assert_count_consistent(group)
    assert_api_error(clients["m1"].post(f"/groups/{uuid.uuid4()}/leave"), code="NOT_FOUND", status=404)


def test_roles_are_the_owners_to_set(cast):
    group, users, clients = cast
    url = f"/groups/{group.pk}/members/{users['m1'].pk}"
    assert_api_error(
        clients["admin"].patch(url, {"role": "admin"}, format="json"), code="PERMISSION_DENIED", status=403
    )
    resp = clients["owner"].patch(url, {"role": "admin"}, format="json")
    assert resp.status_code == 200, resp.content
    assert resp.json()["role"] == "admin"
    resp = clients["owner"].patch(url, {"role": "member"}, format="json")
    assert resp.json()["role"] == "member"
    resp = clients["owner"].patch(url, {"role": "owner"}, format="json")
    assert_api_error(resp, code="VALIDATION_ERROR", status=400)
    own = f"/groups/{group.pk}/members/{users['owner'].pk}"
    assert_api_error(
        clients["owner"].patch(own, {"role": "member"}, format="json"), code="OWNER_REQUIRED", status=409
    )
    assert roles(group)[users["owner"].pk] == "owner"


def test_transfer_ownership(cast):
    group, users, clients = cast
    url = f"/groups/{group.pk}/transfer-ownership"
    assert_api_error(
        clients["admin"].post(url, {"user_id": users["m1"].pk}, format="json"),
        code="PERMISSION_DENIED",
        status=403,
    )
    outsider = UserFactory()
    assert_api_error(
        clients["owner"].post(url, {"user_id": outsider.pk}, format="json"), code="NOT_FOUND", status=404
    )

    resp = clients["owner"].post(url, {"user_id": users["m1"].pk}, format="json")

    assert resp.status_code == 200, resp.content
    assert resp.json()["role"] == "admin"
    assert roles(group)[users["m1"].pk] == "owner"
    assert roles(group)[users["owner"].pk] == "admin"
    assert Participant.objects.filter(group=group, role="owner").count() == 1
    # Now the old owner can leave, the new one cannot.
    assert clients["owner"].post(f"/groups/{group.pk}/leave").status_code == 204
    assert_api_error(clients["m1"].post(f"/groups/{group.pk}/leave"), code="OWNER_REQUIRED", status=409)


def test_non_members_get_not_member_on_every_member_path(cast):
    group, users, _clients = cast
    stranger = client_for(UserFactory())
    base = f"/groups/{group.pk}"
    uid = users["m1"].pk
    for resp in (
        stranger.post(f"{base}/members", {"user_id": uid}, format="json"),
        stranger.delete(f"{base}/members/{uid}"),
        stranger.patch(f"{base}/members/{uid}", {"role": "admin"}, format="json"),
        stranger.post(f"{base}/bans", {"user_id": uid}, format="json"),
        stranger.post(f"{base}/leave"),
        stranger.post(f"{base}/transfer-ownership", {"user_id": uid}, format="json"),
        stranger.post(f"{base}/invites", {}, format="json"),
    ):
        assert_api_error(resp, code="NOT_MEMBER", status=403)
    assert_count_consistent(group)
