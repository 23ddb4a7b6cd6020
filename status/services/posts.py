"""Status use cases, one transaction each; live events are published after commit
(chatsite.realtime.relay, source "status")."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from chatsite.api.errors import ApiError
from chatsite.realtime.relay import publish_to_user
from status import metrics
from status.models import AudienceMode, StatusAudience, StatusPost
from status.selectors.posts import eligible_viewers, owned_post, visible_post

SOURCE = "status"


def resolve_audience(*, user_id: int, audience_mode: str, audience: list[int]) -> set[int]:
    """The viewers a post goes to: never beyond the owner's contacts, never across a block.
    Ids outside the contacts are dropped silently (an error would tell who blocked whom)."""
    eligible = eligible_viewers(user_id)
    chosen = {int(u) for u in audience}
    if audience_mode == AudienceMode.CONTACTS:
        return eligible
    if audience_mode == AudienceMode.CONTACTS_EXCEPT:
        return eligible - chosen
    if audience_mode == AudienceMode.ONLY:
        return eligible & chosen
    raise ApiError("VALIDATION_ERROR", "Unknown audience mode.", errors={"audience_mode": ["Unknown mode."]})


def _posted_frame(post: StatusPost) -> dict[str, Any]:
    return {
        "type": "status.posted",
        "post_id": str(post.pk),
        "owner_user_id": post.owner_id,
        "created_at": post.created_at.isoformat(),
        "expires_at": post.expires_at.isoformat(),
        "post_epoch": post.post_epoch,
    }


@transaction.atomic
def post_create(
    *,
    user_id: int,
    audience_mode: str,
    audience: list[int] | None = None,
    ciphertext: str = "",
    media_ref: str = "",
    media_meta: dict | None = None,
    now: datetime | None = None,
) -> StatusPost:
    if bool(ciphertext) == bool(media_ref):
        raise ApiError(
            "VALIDATION_ERROR",
            "Send either a ciphertext or a media reference.",
            errors={"ciphertext": ["Send either ciphertext or media_ref, not both."]},
        )
    now = now or timezone.now()
    viewers = resolve_audience(user_id=user_id, audience_mode=audience_mode, audience=audience or [])
    post = StatusPost.objects.create(
        owner_id=user_id,
        ciphertext=ciphertext,
        media_ref=media_ref,
        media_meta=media_meta or {},
        audience_mode=audience_mode,
        created_at=now,
        expires_at=now + timedelta(hours=settings.STATUS_TTL_HOURS),
    )
    StatusAudience.objects.bulk_create([StatusAudience(post=post, viewer_id=v) for v in sorted(viewers)])
    frame = _posted_frame(post)
    for viewer in sorted(viewers):
        publish_to_user(viewer, frame, source=SOURCE)
    transaction.on_commit(metrics.STATUS_POSTS_CREATED.inc)
    return post


@transaction.atomic
def audience_update(
    *,
    user_id: int,
    post_id,
    audience_mode: str,
    audience: list[int] | None = None,
    now: datetime | None = None,
) -> tuple[StatusPost, set[int], set[int]]:
    """Replace the post's audience and bump post_epoch. The owner's streams and the new audience
    get `status.rekey` (the owner re-encrypts for the new audience); removed viewers get nothing:
    for them the post no longer exists. Returns (post, added, removed)."""
    post = owned_post(post_id=post_id, user_id=user_id, now=now, for_update=True)
    viewers = resolve_audience(user_id=user_id, audience_mode=audience_mode, audience=audience or [])
    before = set(StatusAudience.objects.filter(post=post).values_list("viewer_id", flat=True))
    added, removed = viewers - before, before - viewers
    StatusAudience.objects.filter(post=post, viewer_id__in=removed).delete()
    StatusAudience.objects.bulk_create([StatusAudience(post=post, viewer_id=v) for v in sorted(added)])
    post.audience_mode = audience_mode
    post.post_epoch += 1
    post.save(update_fields=["audience_mode", "post_epoch"])
    frame = {"type": "status.rekey", "post_id": str(post.pk), "post_epoch": post.post_epoch}
    publish_to_user(
        user_id,
        {**frame, "audience": sorted(viewers), "added": sorted(added), "removed": sorted(removed)},
        source=SOURCE,
    )
    for viewer in sorted(viewers):
        publish_to_user(viewer, {**frame, "owner_user_id": user_id}, source=SOURCE)
    return post, added, removed


@transaction.atomic
def post_delete(*, user_id: int, post_id, now: datetime | None = None) -> None:
    """The owner deletes a post early; its audience and views go with it (CASCADE)."""
    post = owned_post(post_id=post_id, user_id=user_id, now=now, for_update=True)
    post.delete()


def view_record(*, user_id: int, post_id, now: datetime | None = None) -> tuple[datetime, bool]:
    """Record that `user_id` viewed the post, once per viewer (INSERT ... ON CONFLICT DO NOTHING:
    parallel calls record one row). Returns (viewed_at of the one row, created now?). The owner's
    own views are not recorded."""
    now = now or timezone.now()
    with transaction.atomic():
        post = visible_post(post_id=post_id, user_id=user_id, now=now)
        if post.owner_id == user_id:
            return now, False
        with connection.cursor() as cursor:
            # Hold the post until commit (a delete by its owner or the cleanup waits, or has
            # already happened: then there is nothing to view). The foreign key would only be
            # checked at commit (Django's constraints are deferred) and fail there as a 500.
            cursor.execute("SELECT 1 FROM status_posts WHERE id = %s FOR KEY SHARE", [post.pk])
            if cursor.fetchone() is None:
                raise ApiError("NOT_FOUND", "No such status post.")
            cursor.execute(
                "INSERT INTO status_views (post_id, viewer_user_id, viewed_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (post_id, viewer_user_id) DO NOTHING RETURNING viewed_at",
                [post.pk, user_id, now],
            )
            row = cursor.fetchone()
            if row is not None:
                transaction.on_commit(metrics.STATUS_VIEWS.inc)
                return row[0], True
            cursor.execute(
                "SELECT viewed_at FROM status_views WHERE post_id = %s AND viewer_user_id = %s",
                [post.pk, user_id],
            )
            return cursor.fetchone()[0], False
