"""The status admin never shows ciphertext or media references; seed 000's status SQL runs
unchanged (only the <placeholders> filled in and trailing spaces dropped) and answers sensibly."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from status.models import StatusPost
from tests.runbook import run_runbook_sql
from tests.status.helpers import add_contacts, people, post_id

pytestmark = pytest.mark.django_db

SECRET = "U0VDUkVUU1RBVFVTQ0lQSEVS"
MEDIA = "media/secret-object-key-42"


def test_admin_pages_never_show_ciphertext_or_media(admin_client):
    alice, bob = people(2)
    add_contacts(alice, bob)
    text = post_id(alice, ciphertext=SECRET)
    media = post_id(alice, media_ref=MEDIA, media_meta={"caption_ct": SECRET})
    bob.client.post(f"/status/posts/{text}/views")

    pages = []
    for url in (
        "/admin/status/statuspost/",
        f"/admin/status/statuspost/?q={alice.user.username}",
        f"/admin/status/statuspost/{text}/change/",
        f"/admin/status/statuspost/{media}/change/",
        "/admin/status/statusview/",
    ):
        resp = admin_client.get(url)
        assert resp.status_code == 200, url
        pages.append(resp.content.decode())

    assert all(SECRET not in page and MEDIA not in page for page in pages)
    assert text in pages[1] and media in pages[1]
    assert bob.user.username in pages[2]


POSTS = """
SELECT
    sp.id,
    sp.owner_user_id,
    sp.created_at,
    sp.expires_at,
    sp.audience_mode,
    COUNT(sa.viewer_user_id) as audience_count
FROM status_posts sp
LEFT JOIN status_audience sa ON sp.id = sa.post_id
WHERE sp.owner_user_id = <user_id>
GROUP BY sp.id
ORDER BY sp.created_at DESC;
"""

AUDIENCE = """
  SELECT * FROM status_audience
  WHERE post_id = '<post_id>' AND viewer_user_id = <viewer_id>;
"""

VIEWS = """
SELECT
    sv.post_id,
    sv.viewer_user_id,
    sv.viewed_at,
    sp.owner_user_id
FROM status_views sv
JOIN status_posts sp ON sv.post_id = sp.id
WHERE sv.post_id = '<post_id>';
"""

INDEXES = """
  SELECT indexname, indexdef
  FROM pg_indexes
  WHERE tablename IN ('group_messages', 'group_participants', 'status_posts');
"""

ORPHANS = """
SELECT sa.*
FROM status_audience sa
LEFT JOIN status_posts sp ON sa.post_id = sp.id
WHERE sp.id IS NULL;
"""

EXPIRED = """
SELECT COUNT(*)
FROM status_posts
WHERE expires_at < NOW();
"""


def test_the_runbook_status_queries_run_unchanged():
    alice, bob, carol = people(3)
    add_contacts(alice, bob, carol)
    old = post_id(alice, "only", [bob])
    new = post_id(alice)
    bob.client.post(f"/status/posts/{new}/views")
    StatusPost.objects.filter(pk=old).update(
        created_at=timezone.now() - timedelta(days=2), expires_at=timezone.now() - timedelta(days=1)
    )

    posts = run_runbook_sql(POSTS, user_id=alice.pk)
    assert [(str(r[0]), r[4], r[5]) for r in posts] == [(new, "contacts", 2), (old, "only", 1)]
    assert len(run_runbook_sql(AUDIENCE, post_id=new, viewer_id=carol.pk)) == 1
    assert run_runbook_sql(AUDIENCE, post_id=old, viewer_id=carol.pk) == []
    views = run_runbook_sql(VIEWS, post_id=new)
    assert [(str(r[0]), r[1], r[3]) for r in views] == [(new, bob.pk, alice.pk)]
    assert {"status_posts_pkey", "status_posts_expires_at"} <= {r[0] for r in run_runbook_sql(INDEXES)}
    assert run_runbook_sql(ORPHANS) == []
    assert run_runbook_sql(EXPIRED) == [(1,)]
