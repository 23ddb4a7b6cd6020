"""GET /status/presence and GET|PATCH /status/presence/privacy: the privacy matrix (each setting x
relationship: contact, non-contact, blocked, self), reciprocity, bounds and the feature flag."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chatsite.accounts.models import Block, Contact
from presence.models import UserPresence
from tests.conftest import assert_api_error, client_for
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

SEEN = timezone.now().replace(microsecond=0)


def _target(share_online="everyone", share_last_seen="everyone"):
    user = UserFactory()
    UserPresence.objects.create(
        user=user,
        device_online=True,
        last_seen_at=SEEN,
        privacy_settings={
            "share_online": share_online,
            "share_last_seen": share_last_seen,
            "read_receipts": True,
        },
    )
    return user


def _relate(target, viewer, relation: str) -> None:
    if relation == "contact":
        Contact.objects.create(owner=target, contact=viewer)
    elif relation == "blocked_by_target":
        Block.objects.create(blocker=target, blocked=viewer)
    elif relation == "blocking_target":
        Block.objects.create(blocker=viewer, blocked=target)
    elif relation == "contact_but_blocked":
        Contact.objects.create(owner=target, contact=viewer)
        Block.objects.create(blocker=target, blocked=viewer)


def _get(viewer, *targets):
    resp = client_for(viewer).get("/status/presence", {"user_ids": ",".join(str(t.pk) for t in targets)})
    assert resp.status_code == 200, resp.content
    return resp.json()["presence"]


VISIBLE = {"everyone": {"contact": True, "stranger": True}, "contacts": {"contact": True, "stranger": False}}
VISIBLE["nobody"] = {"contact": False, "stranger": False}


@pytest.mark.parametrize("setting", ["everyone", "contacts", "nobody"])
@pytest.mark.parametrize("relation", ["contact", "stranger"])
def test_share_online_and_last_seen_follow_the_targets_setting(setting, relation):
    viewer = UserFactory()
    by_online = _target(share_online=setting)
    by_seen = _target(share_last_seen=setting)
    _relate(by_online, viewer, relation)
    _relate(by_seen, viewer, relation)

    entries = {e["user_id"]: e for e in _get(viewer, by_online, by_seen)}

    shown = VISIBLE[setting][relation]
    assert entries[by_online.pk]["online"] is (True if shown else None)
    assert entries[by_online.pk]["last_seen_at"] is not None  # last seen still shared with everyone
    assert (entries[by_seen.pk]["last_seen_at"] is not None) is shown
    assert entries[by_seen.pk]["online"] is True


@pytest.mark.parametrize("relation", ["blocked_by_target", "blocking_target", "contact_but_blocked"])
def test_a_block_either_way_hides_everything(relation):
    viewer = UserFactory()
    target = _target()
    _relate(target, viewer, relation)

    assert _get(viewer, target) == [{"user_id": target.pk, "online": None, "last_seen_at": None}]


@pytest.mark.parametrize("setting", ["everyone", "contacts", "nobody"])
def test_a_user_always_sees_themself(setting):
    me = _target(share_online=setting, share_last_seen=setting)

    [entry] = _get(me, me)

    assert entry["online"] is True and entry["last_seen_at"] is not None


def test_who_hides_their_last_seen_sees_no_ones_last_seen():
    viewer = _target(share_last_seen="nobody")
    target = _target()
    Contact.objects.create(owner=target, contact=viewer)

    [entry] = _get(viewer, target)

    assert entry == {"user_id": target.pk, "online": True, "last_seen_at": None}


def test_a_contact_is_whom_the_target_lists_not_whom_the_viewer_lists():
    viewer = UserFactory()
    target = _target(share_online="contacts")
    Contact.objects.create(owner=viewer, contact=target)  # one-sided, the wrong way round

    [entry] = _get(viewer, target)

    assert entry["online"] is None


def test_users_without_a_presence_row_are_offline_and_unknown_ids_are_left_out():
    viewer, other = UserFactory(), UserFactory()

    resp = client_for(viewer).get("/status/presence", {"user_ids": f"{other.pk},999999,{other.pk}"})

    assert resp.json() == {"presence": [{"user_id": other.pk, "online": False, "last_seen_at": None}]}


def test_the_whole_list_is_one_query():
    viewer = UserFactory()
    targets = [_target() for _ in range(5)]
    client = client_for(viewer)
    ids = ",".join(str(t.pk) for t in targets)

    with CaptureQueriesContext(connection) as ctx:
        resp = client.get("/status/presence", {"user_ids": ids})

    assert resp.status_code == 200 and len(resp.json()["presence"]) == 5
    presence_queries = [q for q in ctx.captured_queries if "user_presence" in q["sql"]]
    assert len(presence_queries) == 1


def test_the_number_of_ids_is_bounded(settings):
    settings.PRESENCE_MAX_USER_IDS = 3
    viewer = UserFactory()

    resp = client_for(viewer).get("/status/presence", {"user_ids": "1,2,3,4"})

    assert_api_error(resp, code="VALIDATION_ERROR", status=400)


@pytest.mark.parametrize("raw", ["", "a", "1,,2", "-1", "1.5"])
def test_bad_ids_are_a_validation_error(raw):
    resp = client_for(UserFactory()).get("/status/presence", {"user_ids": raw})

    assert_api_error(resp, code="VALIDATION_ERROR", status=400)


def test_privacy_defaults_and_patch():
    user = UserFactory()
    client = client_for(user)

    assert client.get("/status/presence/privacy").json() == {
        "share_last_seen": "everyone",
        "share_online": "everyone",
        "read_receipts": True,
    }
    resp = client.patch(
        "/status/presence/privacy", {"share_online": "contacts", "read_receipts": False}, format="json"
    )

    assert resp.status_code == 200
    assert resp.json() == {"share_last_seen": "everyone", "share_online": "contacts", "read_receipts": False}
    assert client.get("/status/presence/privacy").json()["share_online"] == "contacts"
    with connection.cursor() as cur:  # what the status app reads by raw SQL
        cur.execute(
            "SELECT privacy_settings->>'read_receipts' FROM user_presence WHERE user_id = %s", [user.pk]
        )
        assert cur.fetchone() == ("false",)


@pytest.mark.parametrize(
    "body",
    [{}, {"share_online": "friends"}, {"read_receipts": "yes"}, {"read_receipts": 1}, {"colour": "red"}],
)
def test_bad_privacy_patches_are_refused(body):
    resp = client_for(UserFactory()).patch("/status/presence/privacy", body, format="json")

    assert_api_error(resp, code="VALIDATION_ERROR", status=400)


def test_anonymous_is_refused():
    from rest_framework.test import APIClient

    assert APIClient().get("/status/presence/privacy").status_code == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/status/presence?user_ids=1"),
        ("get", "/status/presence/privacy"),
        ("patch", "/status/presence/privacy"),
    ],
)
def test_the_feature_flag_turns_presence_off(settings, method, path):
    settings.PRESENCE_ENABLED = False
    client = client_for(UserFactory())

    resp = (
        getattr(client, method)(path, {"read_receipts": True}, format="json")
        if method == "patch"
        else client.get(path)
    )

    assert_api_error(resp, code="FEATURE_DISABLED", status=403)
