"""Response bodies of the status paths."""

from __future__ import annotations

from typing import Any

from status.models import StatusPost, StatusView
from status.selectors.posts import FeedPage


def post_created_body(post: StatusPost) -> dict[str, Any]:
    return {"id": str(post.pk), "expires_at": post.expires_at, "post_epoch": post.post_epoch}


def post_body(post: StatusPost, *, seen: bool, audience: list[int] | None = None) -> dict[str, Any]:
    body = {
        "id": str(post.pk),
        "owner_user_id": post.owner_id,
        "ciphertext": post.ciphertext,
        "media_ref": post.media_ref,
        "media_meta": post.media_meta,
        "created_at": post.created_at,
        "expires_at": post.expires_at,
        "post_epoch": post.post_epoch,
        "seen": seen,
    }
    if audience is not None:
        body["audience_mode"] = post.audience_mode
        body["audience"] = audience
    return body


def feed_body(page: FeedPage) -> dict[str, Any]:
    return {
        "groups": [
            {
                "owner_user_id": g.owner_id,
                "latest_at": g.latest_at,
                "all_seen": all(p.seen for p in g.posts),
                "posts": [post_body(p, seen=p.seen) for p in g.posts],
            }
            for g in page.groups
        ],
        "next_cursor": page.next_cursor,
    }


def view_body(view: StatusView) -> dict[str, Any]:
    return {"viewer_user_id": view.viewer_id, "viewed_at": view.viewed_at}
