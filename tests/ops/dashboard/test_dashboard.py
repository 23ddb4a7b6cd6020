"""The staff dashboard (/admin/ops/dashboard/): staff only, and each section shows real figures
from where they are computed (ops/dashboard/selectors.py)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chatsite.accounts.models import SecurityEvent
from chatsite.metrics import WS_CONNECTIONS_ACTIVE
from chatsite.realtime import live_connections
from groups.models import Participant
from ops.dashboard import selectors
from ops.integrity.registry import BY_NAME
from ops.models import IntegrityResult
from tests.factories import GroupFactory, UserFactory

pytestmark = pytest.mark.django_db

URL = "/admin/ops/dashboard/"


def section(page: str, section_id: str) -> str:
    """The HTML of one dashboard section (a <div id=...> module)."""
    match = re.search(rf'<div class="module ops-section" id="{section_id}">(.*?)\n</div>', page, re.S)
    assert match, f"no #{section_id} section"
    return match[1]


def row(page: str, attribute: str, value: str) -> str:
    match = re.search(rf'<tr[^>]*{attribute}="{re.escape(value)}"[^>]*>(.*?)</tr>', page, re.S)
    assert match, f"no row with {attribute}={value}"
    return match[1]


def test_staff_see_every_section(admin_client):
    resp = admin_client.get(URL)

    assert resp.status_code == 200
    page = resp.content.decode()
    for section_id in ("ops-health", "ops-integrity", "ops-flags", "ops-connections", "ops-security"):
        assert f'id="{section_id}"' in page


def test_anyone_not_staff_is_sent_to_the_admin_log_in(client):
    user = UserFactory()
    client.force_login(user)

    logged_in = client.get(URL)
    client.logout()
    anonymous = client.get(URL)

    for resp in (logged_in, anonymous):
        assert resp.status_code == 302
        assert resp["Location"].startswith("/admin/login/?next=/admin/ops/dashboard/")


def test_the_admin_index_links_to_the_dashboard(admin_client):
    page = admin_client.get("/admin/").content.decode()

    assert f'href="{URL}"' in page


def test_health_shows_postgresql_redis_celery_and_both_breakers(admin_client):
    page = section(admin_client.get(URL).content.decode(), "ops-health")

    for name in ("database", "redis", "celery"):
        assert re.search(rf"<th scope=\"row\">{name}</th>\s*<td[^>]*>(ok|degraded)</td>", page), name
    assert "latency_ms=" in page  # the details the public /health hides
    assert re.search(r'data-breaker="database".*?>closed</td>', page, re.S)
    assert re.search(r'data-breaker="redis".*?>closed</td>', page, re.S)


def test_an_integrity_result_shows_its_count_runbook_remediation_and_a_link_to_its_rows(admin_client):
    IntegrityResult.objects.create(
        check_name="groups_without_owner", severity="critical", violations=3, duration_ms=1.5
    )

    page = admin_client.get(URL).content.decode()
    result = row(page, "data-check", "groups_without_owner")

    assert re.search(r'class="ops-bad">3</td>', result)
    assert 'href="/admin/groups/group/?has_owner=no"' in result
    assert "python manage.py promote_group_owner GROUP_ID" in result
    assert "seed 000" in result


def test_a_failed_check_shows_its_error(admin_client):
    IntegrityResult.objects.create(
        check_name="otpk_pool_low", severity="warning", error="statement timeout", violations=0
    )

    result = row(admin_client.get(URL).content.decode(), "data-check", "otpk_pool_low")

    assert "error: statement timeout" in result
    assert 'href="/admin/dm/device/?pool=low"' in result


def test_the_integrity_link_lists_exactly_the_offending_groups(admin_client):
    orphaned, healthy = GroupFactory(title="orphaned"), GroupFactory(title="healthy")
    Participant.objects.filter(group=orphaned, role=Participant.Role.OWNER).delete()
    IntegrityResult.objects.create(check_name="groups_without_owner", severity="critical", violations=1)

    href = re.search(
        r'data-check="groups_without_owner".*?href="([^"]+)"', admin_client.get(URL).content.decode(), re.S
    )[1]
    listed = admin_client.get(href.replace("&amp;", "&")).content.decode()

    assert str(orphaned.pk) in listed
    assert str(healthy.pk) not in listed


@override_settings(STATUS_ENABLED=False, GROUPS_ENABLED=True)
def test_flags_show_each_flags_effective_state(admin_client):
    page = admin_client.get(URL).content.decode()

    assert re.search(r"<td>STATUS_ENABLED</td>\s*<td[^>]*>off</td>", row(page, "data-flag", "STATUS"))
    assert re.search(r"<td>GROUPS_ENABLED</td>\s*<td[^>]*>on</td>", row(page, "data-flag", "GROUPS"))


def test_active_connections_show_this_hosts_gauge_and_every_processes_stream_records(admin_client):
    before = selectors.connections().host_total
    stream = SimpleNamespace(
        channel_name="specific.test!dashboard",
        user_id=UserFactory().pk,
        transport="ws",
        client_ip="203.0.113.9",
        user_agent="test-agent",
        opened_at=timezone.now().timestamp(),
    )
    async_to_sync(live_connections.record)(stream)
    WS_CONNECTIONS_ACTIVE.labels(transport="ws").inc()
    try:
        page = section(admin_client.get(URL).content.decode(), "ops-connections")
    finally:
        WS_CONNECTIONS_ACTIVE.labels(transport="ws").dec()
        async_to_sync(live_connections.forget)(stream)

    assert f'<td id="ops-connections-host">{before + 1}</td>' in page
    assert '<td id="ops-connections-cluster">1</td>' in page
    assert "ws: 1" in page


def test_security_events_list_failed_log_ins_key_changes_and_bans_never_their_data(admin_client):
    mallory = UserFactory(username="mallory")
    SecurityEvent.objects.create(
        kind=SecurityEvent.Kind.IDENTITY_KEY_CHANGED,
        user=mallory,
        flagged=True,
        data={"device_name": "data-not-for-the-dashboard"},
    )
    SecurityEvent.objects.create(kind=SecurityEvent.Kind.LOGIN_FAILED, user=mallory, ip="198.51.100.7")
    SecurityEvent.objects.create(kind=SecurityEvent.Kind.ACCOUNT_BANNED, user=mallory)
    SecurityEvent.objects.create(kind=SecurityEvent.Kind.DEVICE_BOUND, user=mallory)  # routine

    page = section(admin_client.get(URL).content.decode(), "ops-security")

    events = re.findall(r'<tr class="ops-security-event">(.*?)</tr>', page, re.S)
    assert len(events) == 3
    labels = ["Account Banned", "Login Failed", "Identity Key Changed"]  # newest first
    assert all(label in event for label, event in zip(labels, events, strict=True))
    assert "198.51.100.7" in events[1]
    assert "flagged" in events[2] and "flagged" not in events[0]
    assert all("mallory" in event for event in events)
    assert "data-not-for-the-dashboard" not in page


@override_settings(OPS_DASHBOARD_SECURITY_EVENTS=2)
def test_security_events_are_the_newest_up_to_the_setting():
    user = UserFactory()
    for _ in range(3):
        SecurityEvent.objects.create(kind=SecurityEvent.Kind.LOGIN_FAILED, user=user)
    newest = list(SecurityEvent.objects.order_by("-created_at", "-id").values_list("id", flat=True)[:2])

    assert [event.id for event in selectors.recent_security_events()] == newest


def test_the_page_costs_the_same_queries_however_many_rows_it_lists(admin_client):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(URL).status_code == 200
        return len(captured)

    user = UserFactory()
    SecurityEvent.objects.create(kind=SecurityEvent.Kind.LOGIN_FAILED, user=user)
    IntegrityResult.objects.create(check_name="otpk_pool_low", severity="warning")
    few = queries()
    for _ in range(10):
        SecurityEvent.objects.create(kind=SecurityEvent.Kind.LOGIN_FAILED, user=UserFactory())
    IntegrityResult.objects.create(check_name="groups_without_owner", severity="critical", violations=2)
    IntegrityResult.objects.create(check_name="presence_stuck_online", severity="warning", violations=1)

    assert queries() == few


def test_every_offending_rows_link_names_a_registered_check_and_opens_a_filtered_list(admin_client):
    assert set(selectors.OFFENDING_ROWS) <= set(BY_NAME)
    for check_name in selectors.OFFENDING_ROWS:
        url = selectors._changelist_url(check_name)
        assert url, check_name
        # An unknown filter parameter would redirect to ?e=1; a known one lists (200).
        assert admin_client.get(url).status_code == 200, url


@pytest.mark.django_db(transaction=True)
def test_a_runtime_override_is_shown_as_the_flags_source(admin_client):
    # Committed, as an operator's change is, so every refresh of the overrides sees it.
    from chatsite.api import flags
    from chatsite.api.services import flag_clear, flag_set

    flag_set(name="STATUS", enabled=False, by=None, reason="test")
    flags.overrides.refresh()
    try:
        status = row(admin_client.get(URL).content.decode(), "data-flag", "STATUS")
    finally:
        flag_clear(name="STATUS", by=None, reason="test")
        flags.overrides.forget()

    assert "runtime override" in status
    assert re.search(r"<td[^>]*>off</td>", status)


def test_results_of_checks_no_longer_registered_are_not_shown(admin_client):
    IntegrityResult.objects.create(check_name="a_retired_check", severity="warning", violations=4)
    IntegrityResult.objects.create(check_name="otpk_pool_low", severity="warning", violations=1)

    page = admin_client.get(URL).content.decode()

    assert 'data-check="otpk_pool_low"' in page
    assert "a_retired_check" not in page


def test_a_remediation_with_a_page_links_to_it(admin_client):
    IntegrityResult.objects.create(check_name="orphaned_dm_delivery", severity="warning", violations=2)
    IntegrityResult.objects.create(check_name="groups_without_owner", severity="critical", violations=1)

    page = admin_client.get(URL).content.decode()

    orphans = row(page, "data-check", "orphaned_dm_delivery")
    assert 'href="/admin/ops/remediations/">remediate</a>' in orphans
    assert "python manage.py clear_orphans --kind dm_delivery" in orphans
    assert 'href="/admin/groups/group/?has_owner=no">remediate</a>' in row(
        page, "data-check", "groups_without_owner"
    )
