"""Every model is in the admin, searchable and filterable the way the runbooks look things up
(a group by id or title, a user by username, a device by id, ...), and read-only where editing
would break an invariant."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.apps import apps
from django.contrib import admin
from django.test import RequestFactory
from django.utils import timezone

from chatsite.accounts.models import User
from dm.models import KeyBundle
from groups.models import Group, Participant
from presence.models import UserPresence
from status.models import StatusPost
from tests.factories import DeviceFactory, GroupFactory, MessageFactory, UserFactory
from tests.status.helpers import people, post_id

pytestmark = pytest.mark.django_db

PROJECT_APPS = ("accounts", "api", "dm", "groups", "status", "presence", "ops")
# One row per dependency, shown and reset on the Feature flags page (chatsite/api/admin.py).
NOT_IN_THE_ADMIN = {"api.CircuitBreakerReset"}
# A handful of rows by construction (one per flag): the Feature flags page lists them all.
NO_SEARCH_NEEDED = {"api.FeatureFlag"}


def changelist(admin_client, model, **params) -> str:
    url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
    resp = admin_client.get(url, params)
    assert resp.status_code == 200, (url, params)
    return resp.content.decode()


def test_every_model_of_the_project_is_in_the_admin():
    missing = [
        model._meta.label
        for label in PROJECT_APPS
        for model in apps.get_app_config(label).get_models()
        if model not in admin.site._registry and model._meta.label not in NOT_IN_THE_ADMIN
    ]

    assert missing == []


def test_every_registered_model_is_searchable_and_its_changelist_loads_with_a_search(admin_client):
    UserFactory(username="someone")
    for model, model_admin in admin.site._registry.items():
        if model._meta.label in NO_SEARCH_NEEDED:
            continue
        assert model_admin.search_fields, f"{model._meta.label} has no search_fields"
        # A term that is no valid id of any kind must not break an exact-id search either.
        changelist(admin_client, model, q="someone")


def test_invariant_tables_cannot_be_added_to_or_deleted_from_even_by_a_superuser():
    request = RequestFactory().get("/admin/")
    request.user = UserFactory(is_staff=True, is_superuser=True)
    editable = {User, *[m for m in admin.site._registry if m._meta.app_label in ("auth", "api")]}
    editable |= {apps.get_model("accounts", "Contact"), apps.get_model("accounts", "Block")}

    changeable = [
        model._meta.label
        for model, model_admin in admin.site._registry.items()
        if model not in editable
        and (model_admin.has_add_permission(request) or model_admin.has_delete_permission(request))
    ]

    assert changeable == []


def test_a_group_is_found_by_its_title_and_by_its_id(admin_client):
    wanted, other = GroupFactory(title="night shift"), GroupFactory(title="day shift")

    by_title = changelist(admin_client, Group, q="night")
    by_id = changelist(admin_client, Group, q=str(wanted.pk))

    assert str(wanted.pk) in by_title and str(other.pk) not in by_title
    assert str(wanted.pk) in by_id and str(other.pk) not in by_id


def test_a_user_is_found_by_username(admin_client):
    UserFactory(username="carol_support"), UserFactory(username="dave")

    page = changelist(admin_client, User, q="carol_support")

    assert "carol_support" in page and ">dave<" not in page


def test_a_device_is_found_by_its_id(admin_client):
    wanted, other = DeviceFactory(), DeviceFactory()

    page = changelist(admin_client, apps.get_model("dm", "Device"), q=str(wanted.pk))

    assert str(wanted.pk) in page and str(other.pk) not in page


def test_a_message_is_found_by_its_client_message_id(admin_client):
    wanted, other = MessageFactory(), MessageFactory()

    page = changelist(admin_client, apps.get_model("dm", "Message"), q=wanted.client_message_id)

    assert f'href="/admin/dm/message/{wanted.pk}/change/' in page
    assert f'href="/admin/dm/message/{other.pk}/change/' not in page


def test_the_has_owner_filter_finds_orphaned_groups(admin_client):
    orphaned, healthy = GroupFactory(), GroupFactory()
    Participant.objects.filter(group=orphaned, role=Participant.Role.OWNER).delete()

    page = changelist(admin_client, Group, has_owner="no")

    assert str(orphaned.pk) in page and str(healthy.pk) not in page


def test_the_prekey_pool_filter_finds_devices_below_the_thresholds(admin_client, settings):
    settings.E2EE_OTPK_CRITICAL, settings.E2EE_OTPK_LOW_WATERMARK = 2, 4
    critical, low, fine = (
        DeviceFactory(one_time_prekeys=1),
        DeviceFactory(one_time_prekeys=3),
        DeviceFactory(),
    )
    assert KeyBundle.objects.get(device=fine).prekeys_remaining >= 4
    Device = apps.get_model("dm", "Device")  # noqa: N806

    critical_page = changelist(admin_client, Device, pool="critical")
    low_page = changelist(admin_client, Device, pool="low")

    assert str(critical.pk) in critical_page and str(low.pk) not in critical_page
    assert str(critical.pk) in low_page and str(low.pk) in low_page and str(fine.pk) not in low_page


def test_the_stuck_filter_finds_users_shown_online_without_a_recent_heartbeat(admin_client, settings):
    stuck, live, offline = UserFactory(), UserFactory(), UserFactory()
    old = timezone.now() - timedelta(seconds=settings.INTEGRITY_PRESENCE_STUCK_AFTER_S + 60)
    UserPresence.objects.create(user=stuck, device_online=True, last_seen_at=old)
    UserPresence.objects.create(user=live, device_online=True, last_seen_at=timezone.now())
    UserPresence.objects.create(user=offline, device_online=False, last_seen_at=old)

    page = changelist(admin_client, UserPresence, stuck="yes")

    assert stuck.username in page
    assert live.username not in page and offline.username not in page


def test_the_expired_filter_finds_status_posts_past_their_expiry(admin_client):
    alice = people(1)[0]
    expired, current = post_id(alice), post_id(alice)
    StatusPost.objects.filter(pk=expired).update(expires_at=timezone.now() - timedelta(hours=1))

    page = changelist(admin_client, StatusPost, expired="yes")

    assert expired in page and current not in page


def test_security_events_filter_by_kind_and_flagged(admin_client):
    SecurityEvent = apps.get_model("accounts", "SecurityEvent")  # noqa: N806
    user = UserFactory()
    SecurityEvent.objects.create(kind="identity_key_changed", user=user, flagged=True)
    SecurityEvent.objects.create(kind="login_failed", user=user)
    SecurityEvent.objects.create(kind="login_failed", user=user)

    # The paginator's count of matching rows ("N security event(s)").
    def count(**params) -> int:
        return int(
            re.search(r"(\d+) security events?\b", changelist(admin_client, SecurityEvent, **params))[1]
        )

    assert count(q=user.username) == 3
    assert count(q=user.username, kind__exact="login_failed") == 2
    assert count(q=user.username, flagged__exact="1") == 1


def test_the_capacity_filter_counts_participants_as_the_runbook_does(admin_client):
    over, full, roomy = GroupFactory(), GroupFactory(), GroupFactory()
    # Room for the owner alone; a second participant written past the service (as corruption
    # would be) leaves member_count untouched, so only a count of the rows finds it.
    Group.objects.filter(pk__in=[over.pk, full.pk]).update(max_participants=1)
    Participant.objects.create(group=over, user=UserFactory())

    over_page = changelist(admin_client, Group, capacity="over")
    full_page = changelist(admin_client, Group, capacity="full")

    assert str(over.pk) in over_page and str(full.pk) not in over_page
    assert str(over.pk) in full_page and str(full.pk) in full_page and str(roomy.pk) not in full_page


def test_the_pending_filter_finds_dm_copies_unacknowledged_past_the_alert_age(admin_client, settings):
    stale, fresh = MessageFactory(), MessageFactory()
    old = timezone.now() - timedelta(seconds=settings.INTEGRITY_UNDELIVERED_AFTER_S + 60)
    Delivery = apps.get_model("dm", "Delivery")  # noqa: N806
    Delivery.objects.filter(message=stale).update(created_at=old)

    page = changelist(admin_client, Delivery, pending="stale")

    def listed(message) -> bool:
        return any(
            f'href="/admin/dm/delivery/{d.pk}/change/' in page
            for d in Delivery.objects.filter(message=message)
        )

    assert listed(stale) and not listed(fresh)
