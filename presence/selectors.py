"""Reads: who may see whose presence (docs/presence.md, "Privacy").

A target's `share_online` / `share_last_seen` say who may see that field: everyone, contacts (the
viewer is in the target's contacts) or nobody. Reciprocity: a viewer whose own share_last_seen is
"nobody" sees nobody's last seen. A block in either direction hides everything. A user always
sees themself.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, OuterRef, Q

from chatsite.accounts.models import Block, Contact, User
from presence.models import CONTACTS, EVERYONE, UserPresence, default_privacy


def _privacy(raw: dict | None) -> dict:
    merged = default_privacy()
    merged.update({k: v for k, v in (raw or {}).items() if k in merged})
    return merged


def allowed(setting: str, *, is_contact: bool) -> bool:
    return setting == EVERYONE or (setting == CONTACTS and is_contact)


def privacy_of(user_id: int) -> dict:
    row = UserPresence.objects.filter(user_id=user_id).values_list("privacy_settings", flat=True).first()
    return _privacy(row)


def visible(
    *,
    viewer_id: int,
    target_id: int,
    target: dict,
    is_contact: bool,
    blocked: bool,
    viewer_hides_last_seen: bool,
) -> dict[str, Any]:
    """One entry of GET /status/presence: a field is None where privacy hides it."""
    online, last_seen = target["online"], target["last_seen_at"]
    if target_id == viewer_id:
        return {"user_id": target_id, "online": online, "last_seen_at": last_seen}
    if blocked:
        return {"user_id": target_id, "online": None, "last_seen_at": None}
    privacy = target["privacy"]
    show_online = allowed(privacy["share_online"], is_contact=is_contact)
    show_seen = allowed(privacy["share_last_seen"], is_contact=is_contact) and not viewer_hides_last_seen
    return {
        "user_id": target_id,
        "online": online if show_online else None,
        "last_seen_at": last_seen if show_seen else None,
    }


def presence_for(*, viewer_id: int, user_ids: list[int]) -> list[dict[str, Any]]:
    """The presence of existing users among `user_ids` (request order) as the viewer may see it:
    one query for the whole list (the viewer's own settings ride along in it)."""
    wanted = list(dict.fromkeys(user_ids))
    rows = (
        User.objects.filter(pk__in=[*wanted, viewer_id])
        .annotate(
            is_contact=Exists(Contact.objects.filter(owner=OuterRef("pk"), contact_id=viewer_id)),
            blocked=Exists(
                Block.objects.filter(
                    Q(blocker=OuterRef("pk"), blocked_id=viewer_id)
                    | Q(blocker_id=viewer_id, blocked=OuterRef("pk"))
                )
            ),
        )
        .values(
            "pk",
            "is_contact",
            "blocked",
            "presence__device_online",
            "presence__last_seen_at",
            "presence__privacy_settings",
        )
    )
    by_id = {
        row["pk"]: {
            "online": bool(row["presence__device_online"]),
            "last_seen_at": row["presence__last_seen_at"],
            "privacy": _privacy(row["presence__privacy_settings"]),
            "is_contact": row["is_contact"],
            "blocked": row["blocked"],
        }
        for row in rows
    }
    viewer = by_id.get(viewer_id)
    viewer_hides = viewer is not None and viewer["privacy"]["share_last_seen"] == "nobody"
    return [
        visible(
            viewer_id=viewer_id,
            target_id=uid,
            target=by_id[uid],
            is_contact=by_id[uid]["is_contact"],
            blocked=by_id[uid]["blocked"],
            viewer_hides_last_seen=viewer_hides,
        )
        for uid in wanted
        if uid in by_id
    ]


def audience_frames(user_id: int, *, online: bool) -> list[tuple[int, dict[str, Any]]]:
    """(recipient, presence.changed frame) for each contact allowed to see `user_id` go on- or
    offline: users who have them as a contact, not blocked either way, allowed by share_online."""
    row = (
        UserPresence.objects.filter(user_id=user_id).values("privacy_settings", "last_seen_at").first() or {}
    )
    privacy = _privacy(row.get("privacy_settings"))
    if privacy["share_online"] not in (EVERYONE, CONTACTS):
        return []
    watchers = (
        Contact.objects.filter(contact_id=user_id)
        .exclude(owner__in=Block.objects.filter(blocker_id=user_id).values("blocked"))
        .exclude(owner__in=Block.objects.filter(blocked_id=user_id).values("blocker"))
        .annotate(
            mutual=Exists(Contact.objects.filter(owner_id=user_id, contact=OuterRef("owner"))),
        )
        .values("owner_id", "mutual", "owner__presence__privacy_settings")
    )
    frames = []
    last_seen = row.get("last_seen_at")
    for w in watchers:
        if not allowed(privacy["share_online"], is_contact=w["mutual"]):
            continue
        hides = _privacy(w["owner__presence__privacy_settings"])["share_last_seen"] == "nobody"
        show_seen = allowed(privacy["share_last_seen"], is_contact=w["mutual"]) and not hides
        frames.append(
            (
                w["owner_id"],
                {
                    "type": "presence.changed",
                    "user_id": user_id,
                    "online": online,
                    "last_seen_at": last_seen.isoformat() if (show_seen and last_seen) else None,
                },
            )
        )
    return frames
