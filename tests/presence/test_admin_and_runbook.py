"""The presence admin (read-only, found by username) and seed 000's "4. Presence Issues" SQL, run
unchanged (placeholders filled in, as an on-call engineer would in psql)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from presence import services
from presence.models import UserPresence
from tests.factories import UserFactory
from tests.runbook import run_runbook_sql

pytestmark = pytest.mark.django_db

RECORDS = """
SELECT
    up.user_id,
    up.last_seen_at,
    up.device_online,
    up.privacy_settings
FROM user_presence up
WHERE up.user_id = <user_id>;
"""

PRIVACY = """
SELECT
    up.user_id,
    up.privacy_settings->>'share_last_seen' as share_last_seen,
    up.privacy_settings->>'share_online' as share_online
FROM user_presence up
WHERE up.user_id = <user_id>;
"""


def test_the_runbook_presence_records_query():
    user = UserFactory()
    services.mark_online(user_id=user.pk)

    [(user_id, last_seen_at, device_online, privacy)] = run_runbook_sql(RECORDS, user_id=user.pk)

    assert user_id == user.pk and device_online is True and last_seen_at <= timezone.now()
    privacy = privacy if isinstance(privacy, dict) else __import__("json").loads(privacy)
    assert privacy == {"share_last_seen": "everyone", "share_online": "everyone", "read_receipts": True}


def test_the_runbook_privacy_query():
    user = UserFactory()
    services.update_privacy(
        user_id=user.pk, changes={"share_last_seen": "nobody", "share_online": "contacts"}
    )

    assert run_runbook_sql(PRIVACY, user_id=user.pk) == [(user.pk, "nobody", "contacts")]


def test_the_admin_finds_presence_by_username_and_is_read_only(admin_client):
    user = UserFactory()
    services.mark_online(user_id=user.pk)

    changelist = admin_client.get("/admin/presence/userpresence/", {"q": user.username})
    detail = admin_client.get(f"/admin/presence/userpresence/{user.pk}/change/")
    post = admin_client.post(f"/admin/presence/userpresence/{user.pk}/change/", {"device_online": ""})

    assert changelist.status_code == 200 and user.username in changelist.content.decode()
    assert detail.status_code == 200 and "share_online" in detail.content.decode()
    assert post.status_code == 403
    assert UserPresence.objects.get(pk=user.pk).device_online is True
    assert admin_client.get("/admin/presence/userpresence/add/").status_code == 403


def test_the_online_users_gauge_counts_users_marked_online():
    from prometheus_client import generate_latest

    from chatsite.metrics import REGISTRY

    a, b = UserFactory(), UserFactory()
    services.mark_online(user_id=a.pk)
    services.mark_online(user_id=b.pk)
    services.mark_offline(user_id=b.pk)

    text = generate_latest(REGISTRY).decode()

    assert "presence_online_users 1.0" in text
    assert "presence_heartbeats_total" in text and "presence_last_seen_flushes_total" in text
