"""Invites: create (admins and the owner) and redeem (anyone with the code).

Redemption is exact under concurrency: it locks the group's row first (the order every
membership change uses, so it cannot deadlock with them), then the invite's row
(`SELECT ... FROM group_invites WHERE code = ... FOR UPDATE`), and reads expiry, uses and the
caller's participation only after both locks. `ck_group_invites_uses` (uses <= max_uses) backs it
in the database: an increment past max_uses fails whatever the race.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from chatsite.api import throttling
from chatsite.api.errors import ApiError
from groups.models import Group, Invite, InviteRedemption, Participant
from groups.services.members import _actor, _admit, _require_admin, lock_group

MIN_EXPIRES_IN_SECONDS = 60


def max_expires_in_seconds() -> int:
    return settings.GROUP_INVITE_TTL_HOURS * 3600


def invite_create(
    *, user_id: int, group_id: Any, max_uses: int | None = None, expires_in_seconds: int | None = None
) -> Invite:
    """A new invite code (secrets.token_urlsafe(24)) valid for `expires_in_seconds` (default and
    maximum GROUP_INVITE_TTL_HOURS, minimum 60 s) and at most `max_uses` redemptions (None: any).
    Rate limited per user (GROUP_INVITE_CREATES_PER_USER_PER_HOUR)."""
    ttl = max_expires_in_seconds() if expires_in_seconds is None else expires_in_seconds
    errors: dict[str, list[str]] = {}
    if not MIN_EXPIRES_IN_SECONDS <= ttl <= max_expires_in_seconds():
        errors["expires_in_seconds"] = [f"Between {MIN_EXPIRES_IN_SECONDS} and {max_expires_in_seconds()}."]
    if max_uses is not None and max_uses < 1:
        errors["max_uses"] = ["At least 1."]
    if errors:
        raise ApiError("VALIDATION_ERROR", errors=errors)
    throttling.check(
        "group_invite_create",
        user_id,
        limit=settings.GROUP_INVITE_CREATES_PER_USER_PER_HOUR,
        window_seconds=3600,
        detail="Too many invites created; try again later.",
    )
    return _invite_create(user_id=user_id, group_id=group_id, max_uses=max_uses, ttl=ttl)


@transaction.atomic
def _invite_create(*, user_id: int, group_id: Any, max_uses: int | None, ttl: int) -> Invite:
    """Under the group's row lock, so the creator's role is current."""
    lock_group(group_id)
    _require_admin(_actor(group_id, user_id))
    now = timezone.now()
    return Invite.objects.create(
        group_id=group_id,
        code=secrets.token_urlsafe(24),
        created_by_id=user_id,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl),
        max_uses=max_uses,
    )


@dataclass(frozen=True)
class Redeemed:
    group: Group
    participant: Participant
    joined: bool  # False: already a member (no use consumed)


def invite_redeem(*, code: str, user_id: int) -> Redeemed:
    """Join the invite's group. 404 unknown code, 410 GONE expired, 403 BANNED, 409 MAX_USES used
    up, 409 GROUP_FULL (via _admit); a current member gets the group back without consuming a
    use. Each admission increments `uses` and records an InviteRedemption. Rate limited per user
    (GROUP_INVITE_REDEEMS_PER_USER_PER_HOUR), failed attempts included (codes are not guessable,
    and probing them costs)."""
    throttling.check(
        "group_invite_redeem",
        user_id,
        limit=settings.GROUP_INVITE_REDEEMS_PER_USER_PER_HOUR,
        window_seconds=3600,
        detail="Too many invites redeemed; try again later.",
    )
    return _invite_redeem(code=code, user_id=user_id)


@transaction.atomic
def _invite_redeem(*, code: str, user_id: int) -> Redeemed:
    group_id = Invite.objects.filter(code=code).values_list("group_id", flat=True).first()
    if group_id is None:
        raise ApiError("NOT_FOUND", "No such invite.")
    lock_group(group_id)  # the group's row lock: first, as for every membership change
    invite = Invite.objects.select_for_update().filter(code=code).first()  # then the invite's
    if invite is None:
        raise ApiError("NOT_FOUND", "No such invite.")
    if invite.expires_at <= timezone.now():
        raise ApiError("GONE", "This invite has expired.")
    existing = Participant.objects.filter(group_id=group_id, user_id=user_id).first()
    if existing is not None:
        if existing.is_banned:
            raise ApiError("BANNED", "You are banned from this group.")
        return Redeemed(Group.objects.get(pk=group_id), existing, joined=False)
    if invite.max_uses is not None and invite.uses >= invite.max_uses:
        raise ApiError("MAX_USES", "This invite has been used up.")
    member = _admit(group_id=group_id, user_id=user_id)
    Invite.objects.filter(pk=invite.pk).update(uses=F("uses") + 1)
    InviteRedemption.objects.create(invite=invite, user_id=user_id)
    return Redeemed(Group.objects.get(pk=group_id), member, joined=True)
