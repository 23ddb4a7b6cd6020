"""The groups admin: support staff find a group by a member's username; no ciphertext or full
invite code on any page."""

from __future__ import annotations

import pytest

from groups.services.invites import invite_create
from tests.dm.helpers import party
from tests.groups.helpers import distribute, make_group, send

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "U0VDUkVUQ0lQSEVSVEVYVA"


def test_a_group_is_found_by_a_members_username_and_shows_its_members(admin_client):
    alice, bob = party(), party()
    group = make_group(alice, bob)

    changelist = admin_client.get("/admin/groups/group/", {"q": bob.user.username})
    detail = admin_client.get(f"/admin/groups/group/{group.pk}/change/")

    assert changelist.status_code == 200 and str(group.pk) in changelist.content.decode()
    assert detail.status_code == 200 and bob.user.username in detail.content.decode()


def test_no_admin_page_shows_ciphertext_or_a_whole_invite_code(admin_client):
    alice, bob = party(), party()
    group = make_group(alice, bob)
    distribute(alice, group)
    assert send(alice, group, ciphertext=SECRET).status_code == 201
    invite = invite_create(user_id=alice.user.pk, group_id=group.pk)

    pages = [
        admin_client.get(url).content.decode()
        for url in (
            "/admin/groups/group/",
            f"/admin/groups/group/{group.pk}/change/",
            "/admin/groups/participant/",
            "/admin/groups/invite/",
            f"/admin/groups/invite/{invite.pk}/change/",
        )
    ]

    assert all(SECRET not in page for page in pages)
    assert all(invite.code not in page for page in pages)
    assert invite.code[:4] in pages[3]
