"""The remediations in the admin: each action shows a confirmation page saying what will change
(and changes nothing), then runs the same service as the command, with the staff user and the
reason in the audit row. No page shows a ciphertext."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client

from chatsite.accounts.models import SecurityEvent, Session
from chatsite.api import throttling
from chatsite.api.redis import get_redis
from dm.models import Delivery as DmDelivery
from groups.models import Participant
from ops.models import IntegrityResult
from tests.conftest import login
from tests.factories import DeviceFactory, GroupFactory, UserFactory, group_add_members
from tests.ops.remediations.helpers import audits, foreign_keys_off

pytestmark = pytest.mark.django_db

PAGE = "/admin/ops/remediations/"
DEAD_REDIS = "redis://127.0.0.1:9899/0"  # nothing listens there


@pytest.fixture
def dead_redis(settings):
    """REDIS_URL points at a port nothing listens on, for this test only."""
    get_redis.cache_clear()
    settings.REDIS_URL = DEAD_REDIS
    yield
    get_redis.cache_clear()


SECRET = "T1JQSEFORURDSVBIRVJURVhU"


def staff(*, superuser: bool = True) -> tuple[Client, object]:
    user = UserFactory(is_staff=True, is_superuser=superuser)
    client = Client()
    client.force_login(user)
    return client, user


def orphaned_group():
    group = GroupFactory()
    heir = UserFactory()
    group_add_members(group, heir, role="admin")
    Participant.objects.filter(group=group, role="owner").delete()
    return group, heir


def test_promote_owner_confirms_with_the_heir_then_promotes():
    group, heir = orphaned_group()
    client, operator = staff()
    form = {"action": "promote_owner", "_selected_action": [str(group.pk)]}

    page = client.post("/admin/groups/group/", form)

    assert page.status_code == 200
    assert f"{heir.username} (admin) becomes the owner" in page.content.decode()
    assert not Participant.objects.filter(group=group, role="owner").exists()

    done = client.post("/admin/groups/group/", {**form, "confirm": "yes", "reason": "orphaned by a bug"})

    assert done.status_code == 302
    assert Participant.objects.get(group=group, user=heir).role == "owner"
    [event] = audits(SecurityEvent.Kind.REMEDIATION_APPLIED)
    assert (event.data["by"], event.data["reason"]) == (operator.pk, "orphaned by a bug")
    assert LogEntry.objects.filter(object_id=str(group.pk)).exists()


def test_a_named_member_is_made_owner_from_the_participants_page():
    group, _heir = orphaned_group()
    member = UserFactory()
    [row] = group_add_members(group, member)
    client, _ = staff()
    form = {
        "action": "promote_to_owner",
        "_selected_action": [str(row.pk)],
        "confirm": "yes",
        "reason": "asked",
    }

    client.post("/admin/groups/participant/", form)

    assert Participant.objects.get(pk=row.pk).role == "owner"


def test_ban_action_confirms_then_bans_from_every_group():
    abuser = UserFactory()
    login(abuser)
    group = GroupFactory()
    group_add_members(group, abuser)
    client, operator = staff()
    form = {"action": "ban_users_from_groups", "_selected_action": [str(abuser.pk)]}

    page = client.post("/admin/accounts/user/", form)

    assert "banned from 1 group(s)" in page.content.decode()
    abuser.refresh_from_db()
    assert abuser.disabled is False

    client.post("/admin/accounts/user/", {**form, "confirm": "yes", "reason": "spam wave"})

    abuser.refresh_from_db()
    assert abuser.disabled is True
    assert not Session.objects.filter(user=abuser, revoked_at__isnull=True).exists()
    assert Participant.objects.get(group=group, user=abuser).is_banned
    [event] = audits(SecurityEvent.Kind.ACCOUNT_BANNED)
    assert (event.user_id, event.data["by"], event.data["reason"]) == (abuser.pk, operator.pk, "spam wave")


def test_the_remediations_page_is_for_superusers_only():
    client, _ = staff(superuser=False)

    assert client.get(PAGE).status_code == 403


def test_flush_from_the_page_confirms_then_removes_only_rl_keys(redis_required):
    throttling.hit("dm_send_min", 7, limit=10, window_seconds=60)
    redis_required.set("rt:streams:u:7", "x")
    client, operator = staff()

    overview = client.get(PAGE, {"rate_limits": "count"})
    page = client.post(PAGE, {"action": "flush_rate_limits"})

    assert "1 window(s)" in overview.content.decode()
    assert "dm_send_min: 1 window(s)" in page.content.decode()
    assert get_redis().exists("rl:dm_send_min:7")

    done = client.post(PAGE, {"action": "flush_rate_limits", "confirm": "yes", "reason": "storm over"})

    assert done.status_code == 302
    assert not get_redis().exists("rl:dm_send_min:7")
    assert get_redis().exists("rt:streams:u:7")
    [event] = audits(SecurityEvent.Kind.RATE_LIMIT_RESET)
    assert (event.data["by"], event.data["removed"]) == (operator.pk, 1)


def test_reset_one_user_from_the_page_carries_the_username_through_the_confirmation(redis_required):
    user, other = UserFactory(), UserFactory()
    throttling.hit("dm_send_min", user.pk, limit=10, window_seconds=60)
    throttling.hit("dm_send_min", other.pk, limit=10, window_seconds=60)
    client, _ = staff()

    page = client.post(PAGE, {"action": "reset_rate_limits", "username": user.username})
    client.post(
        PAGE, {"action": "reset_rate_limits", "username": user.username, "confirm": "yes", "reason": "ok"}
    )

    assert f'name="username" value="{user.username}"' in page.content.decode()
    assert not get_redis().exists(f"rl:dm_send_min:{user.pk}")
    assert get_redis().exists(f"rl:dm_send_min:{other.pk}")


def test_clearing_orphans_from_the_page_never_shows_their_ciphertext():
    user = UserFactory()
    device = DeviceFactory(user=user)
    with foreign_keys_off():
        orphan = DmDelivery.objects.create(
            message_id=987654321, device=device, recipient_user=user, seq=9, ciphertext=SECRET
        )
    client, _ = staff()

    overview = client.get(PAGE).content.decode()
    page = client.post(PAGE, {"action": "clear_orphans:dm_delivery"}).content.decode()
    missing_reason = client.post(
        PAGE, {"action": "clear_orphans:dm_delivery", "confirm": "yes"}
    ).content.decode()
    client.post(PAGE, {"action": "clear_orphans:dm_delivery", "confirm": "yes", "reason": "restore"})

    assert f"dm_delivery id {orphan.pk}" in page
    assert "Give a reason." in missing_reason
    assert all(SECRET not in html for html in (overview, page, missing_reason))
    assert not DmDelivery.objects.filter(pk=orphan.pk).exists()


def test_the_admin_index_links_the_page_for_superusers():
    client, _ = staff()

    assert PAGE in client.get("/admin/").content.decode()


def test_the_page_shows_the_stored_integrity_counts_without_running_the_checks(django_assert_max_num_queries):
    IntegrityResult.objects.create(check_name="orphaned_dm_delivery", severity="warning", violations=7)
    client, _ = staff()
    client.get(PAGE)  # warm the session and admin caches

    with django_assert_max_num_queries(8) as captured:
        html = client.get(PAGE).content.decode()

    assert "7 (checked" in html
    assert not any("LEFT JOIN" in q["sql"] for q in captured.captured_queries)


def test_rate_limit_windows_are_counted_only_on_request(redis_required):
    throttling.hit("dm_send_min", 7, limit=10, window_seconds=60)
    client, _ = staff()

    html = client.get(PAGE).content.decode()

    assert "window(s)</td>" not in html
    assert "?rate_limits=count" in html


def test_an_unknown_action_is_refused_and_flushes_nothing(redis_required):
    throttling.hit("dm_send_min", 7, limit=10, window_seconds=60)
    client, _ = staff()

    for action in ("flush", "clear_orphans:nonsense", ""):
        response = client.post(PAGE, {"action": action, "confirm": "yes", "reason": "oops"})
        assert response.status_code == 400

    assert get_redis().exists("rl:dm_send_min:7")
    assert audits(SecurityEvent.Kind.RATE_LIMIT_RESET) == []


def test_the_confirmation_page_carries_no_selected_action_inputs():
    user = UserFactory()
    device = DeviceFactory(user=user)
    with foreign_keys_off():
        DmDelivery.objects.create(
            message_id=987654321, device=device, recipient_user=user, seq=9, ciphertext="x"
        )
    client, _ = staff()

    html = client.post(PAGE, {"action": "clear_orphans:dm_delivery"}).content.decode()

    assert "dm_delivery id" in html
    assert "_selected_action" not in html


def test_the_page_works_during_a_redis_outage(dead_redis):
    IntegrityResult.objects.create(check_name="orphaned_dm_delivery", severity="warning", violations=3)
    client, _ = staff()

    overview = client.get(PAGE, {"rate_limits": "count"})
    flush = client.post(PAGE, {"action": "flush_rate_limits"}, follow=True)

    assert overview.status_code == 200
    assert "3 (checked" in overview.content.decode()
    assert "Redis unavailable" in overview.content.decode()
    assert flush.status_code == 200
    assert "Redis unavailable" in flush.content.decode()


def test_the_confirmation_lists_a_bounded_sample_and_counts_the_rest(monkeypatch):
    from ops.remediations import views

    monkeypatch.setattr(views, "SHOWN", 2)
    user = UserFactory()
    device = DeviceFactory(user=user)
    with foreign_keys_off():
        for seq in range(5):
            DmDelivery.objects.create(
                message_id=987654321 + seq, device=device, recipient_user=user, seq=seq, ciphertext="x"
            )
    client, _ = staff()

    html = client.post(PAGE, {"action": "clear_orphans:dm_delivery"}).content.decode()

    assert html.count("<li>dm_delivery id ") == 2
    assert "… and 3 more" in html
    assert "These 5 dm_delivery rows" in html


def test_dedupe_from_the_page_lists_the_duplicated_pairs_then_restores_the_constraint():
    from groups.services.remediations import unique_constraint_present
    from tests.ops.remediations.test_dedupe_participants import duplicated_member

    group, user, older, newest = duplicated_member()
    client, _ = staff()

    overview = client.get(PAGE).content.decode()
    page = client.post(PAGE, {"action": "dedupe_participants"}).content.decode()
    client.post(PAGE, {"action": "dedupe_participants", "confirm": "yes", "reason": "race"})

    assert "MISSING" in overview
    assert f"<li>group:user {group.pk}:{user.pk}</li>" in page
    assert "1 (group, user) pair(s)" in page
    assert list(Participant.objects.filter(group=group, user=user).values_list("pk", flat=True)) == [newest]
    assert unique_constraint_present()
