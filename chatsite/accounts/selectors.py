"""Reads for accounts: sessions, users by name, contacts, blocks."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import QuerySet
from django.utils import timezone

from chatsite.accounts.models import Block, Contact, Session, User, normalize_username
from chatsite.accounts.tokens import hash_token

# last_used_at is refreshed at most this often, so authentication is not a write per request.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


def session_for_token(token: str) -> Session | None:
    """The live session a bearer token belongs to, or None (expired, revoked, disabled user)."""
    if not token or len(token) > 200:
        return None
    session = Session.objects.select_related("user").filter(token_hash=hash_token(token)).first()
    now = timezone.now()
    if session is None or session.revoked_at is not None or session.expires_at <= now:
        return None
    if session.user.disabled or not session.user.is_active:
        return None
    if session.last_used_at is None or now - session.last_used_at > _LAST_USED_RESOLUTION:
        Session.objects.filter(pk=session.pk).update(last_used_at=now)
        session.last_used_at = now
    return session


def session_is_live(session_id) -> bool:
    return (
        Session.objects.filter(
            pk=session_id, revoked_at__isnull=True, expires_at__gt=timezone.now(), user__disabled=False
        )
        .only("pk")
        .exists()
    )


def sessions_for_user(*, user: User) -> QuerySet[Session]:
    return Session.objects.filter(user=user, revoked_at__isnull=True, expires_at__gt=timezone.now()).order_by(
        "-created_at"
    )


def active_user_by_username(username: str) -> User | None:
    """The active, enabled user with exactly this name after log-in's normalisation, or None.

    Equality only (no prefix, pattern or similarity match), and one query whether the name is
    unknown or its account disabled, so the caller can answer both alike. Callers that show the
    answer to a user go through `services.user_lookup`, which charges the look-up budget."""
    return User.objects.filter(username=normalize_username(username), is_active=True, disabled=False).first()


def contacts_for_user(*, user: User) -> QuerySet[Contact]:
    return Contact.objects.filter(owner=user).select_related("contact").order_by("contact__username")


def is_blocked(*, sender_id: int, recipient_id: int) -> bool:
    """True if `recipient` has blocked `sender`."""
    return Block.objects.filter(blocker_id=recipient_id, blocked_id=sender_id).exists()


def blocked_users(*, user: User) -> QuerySet[Block]:
    return Block.objects.filter(blocker=user).select_related("blocked").order_by("-created_at")
