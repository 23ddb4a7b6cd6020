"""Reads of status posts. Outside a post's audience the post does not exist: every read raises
NOT_FOUND (never 403) before it looks at expiry; an expired post is GONE to those who may see it."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Avg, Count, Exists, Max, OuterRef, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from chatsite.accounts.models import Block, Contact
from chatsite.api.errors import ApiError
from status.models import StatusAudience, StatusPost, StatusView


def blocked_between(user_id: int) -> set[int]:
    """Users who blocked `user_id` or whom `user_id` blocked."""
    rows = Block.objects.filter(Q(blocker_id=user_id) | Q(blocked_id=user_id)).values_list(
        "blocker_id", "blocked_id"
    )
    return {b if a == user_id else a for a, b in rows}


def eligible_viewers(user_id: int) -> set[int]:
    """Who may ever be in a post's audience: my contacts, without anyone on either side of a
    block with me."""
    contacts = set(Contact.objects.filter(owner_id=user_id).values_list("contact_id", flat=True))
    return contacts - blocked_between(user_id) - {user_id}


def _not_found() -> ApiError:
    return ApiError("NOT_FOUND", "No such status post.")


def visible_post(
    *, post_id, user_id: int, now: datetime | None = None, for_update: bool = False
) -> StatusPost:
    """The post if `user_id` owns it or is in its audience (and no block stands between them);
    NOT_FOUND otherwise; GONE when it has expired."""
    now = now or timezone.now()
    qs = StatusPost.objects.all()
    if for_update:
        qs = qs.select_for_update()
    post = qs.filter(pk=post_id).first()
    if post is None:
        raise _not_found()
    if post.owner_id != user_id:
        in_audience = StatusAudience.objects.filter(post_id=post.pk, viewer_id=user_id).exists()
        if not in_audience or post.owner_id in blocked_between(user_id):
            raise _not_found()
    if post.expires_at <= now:
        raise ApiError("GONE", "This status post has expired.")
    return post


def owned_post(*, post_id, user_id: int, now: datetime | None = None, for_update: bool = False) -> StatusPost:
    """The post if `user_id` owns it; to anyone else it does not exist (NOT_FOUND, also for its
    audience: only the owner edits, deletes or reads views)."""
    post = visible_post(post_id=post_id, user_id=user_id, now=now, for_update=for_update)
    if post.owner_id != user_id:
        raise _not_found()
    return post


def audience_ids(post_id) -> list[int]:
    return sorted(StatusAudience.objects.filter(post_id=post_id).values_list("viewer_id", flat=True))


def viewed_by(post_id, user_id: int) -> bool:
    return StatusView.objects.filter(post_id=post_id, viewer_id=user_id).exists()


# --- Read receipts (user_presence.privacy_settings of the presence app) ---------------------------

READ_RECEIPTS_SQL = (
    "SELECT user_id, COALESCE((privacy_settings->>'read_receipts')::boolean, true) "
    "FROM user_presence WHERE user_id = ANY(%s)"
)


def read_receipts_enabled(user_ids) -> dict[int, bool]:
    """user id -> whether the user shares read receipts; a user without a user_presence row
    shares them (the default)."""
    ids = sorted({int(u) for u in user_ids})
    result = dict.fromkeys(ids, True)
    if not ids:
        return result
    with connection.cursor() as cursor:
        cursor.execute(READ_RECEIPTS_SQL, [ids])
        for user_id, enabled in cursor.fetchall():
            result[int(user_id)] = bool(enabled)
    return result


@dataclass(frozen=True)
class ViewsPage:
    receipts_enabled: bool
    views: list[StatusView]


def post_views(*, post_id, user_id: int, now: datetime | None = None) -> ViewsPage:
    """Who viewed the owner's post: only viewers whose read receipts are on, and nobody at all
    when the owner turned theirs off (reciprocity)."""
    post = owned_post(post_id=post_id, user_id=user_id, now=now)
    views = list(StatusView.objects.filter(post_id=post.pk).order_by("viewed_at", "id"))
    enabled = read_receipts_enabled([user_id, *(v.viewer_id for v in views)])
    if not enabled[user_id]:
        return ViewsPage(receipts_enabled=False, views=[])
    return ViewsPage(receipts_enabled=True, views=[v for v in views if enabled[v.viewer_id]])


# --- Feed ----------------------------------------------------------------------------------------


def encode_cursor(latest: datetime, owner_id: int) -> str:
    return base64.urlsafe_b64encode(f"{latest.isoformat()}|{owner_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, owner = raw.rsplit("|", 1)
        latest = parse_datetime(stamp)
        if latest is None:
            raise ValueError(stamp)
        return latest, int(owner)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ApiError("VALIDATION_ERROR", "Invalid cursor.", errors={"cursor": ["Invalid cursor."]}) from exc


@dataclass(frozen=True)
class FeedGroup:
    owner_id: int
    latest_at: datetime
    posts: list[Any]  # StatusPost annotated with `seen`


@dataclass(frozen=True)
class FeedPage:
    groups: list[FeedGroup]
    next_cursor: str | None


def feed(*, user_id: int, limit: int, cursor: str | None = None, now: datetime | None = None) -> FeedPage:
    """Live posts whose audience holds `user_id`, grouped by author; authors newest post first,
    each author's posts newest first; `limit` authors a page, cursor = (latest post, author)."""
    now = now or timezone.now()
    live = StatusPost.objects.filter(audience__viewer_id=user_id, expires_at__gt=now).exclude(
        owner_id__in=blocked_between(user_id)
    )
    authors = live.values("owner_id").annotate(latest=Max("created_at")).order_by("-latest", "-owner_id")
    if cursor:
        latest, owner_id = decode_cursor(cursor)
        authors = authors.filter(Q(latest__lt=latest) | Q(latest=latest, owner_id__lt=owner_id))
    rows = list(authors[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    owners = [r["owner_id"] for r in rows]
    posts = (
        live.filter(owner_id__in=owners)
        .annotate(seen=Exists(StatusView.objects.filter(post_id=OuterRef("pk"), viewer_id=user_id)))
        .order_by("-created_at", "-id")
    )
    by_owner: dict[int, list] = {o: [] for o in owners}
    for post in posts:
        by_owner[post.owner_id].append(post)
    groups = [FeedGroup(r["owner_id"], r["latest"], by_owner[r["owner_id"]]) for r in rows]
    next_cursor = encode_cursor(rows[-1]["latest"], rows[-1]["owner_id"]) if more else None
    return FeedPage(groups=groups, next_cursor=next_cursor)


def metrics_summary(now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    active = StatusPost.objects.filter(expires_at__gt=now)
    avg = active.annotate(n=Count("audience")).aggregate(avg=Avg("n"))["avg"]
    return {
        "active_posts": active.count(),
        "expired_posts": StatusPost.objects.filter(expires_at__lte=now).count(),
        "avg_audience_size": float(avg or 0.0),
    }
