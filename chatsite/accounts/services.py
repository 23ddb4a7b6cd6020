"""Writes for accounts: one transactional function per use case.

The API, the admin and manage.py all call these; none of them repeats a rule.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from chatsite.accounts.models import Block, Contact, SecurityEvent, Session, User
from chatsite.accounts.signals import sessions_revoked
from chatsite.accounts.tokens import hash_token, new_token
from chatsite.api import throttling
from chatsite.api.errors import ApiError, rate_limited

security_log = logging.getLogger("chatsite.security")


# --- Registration and log-in ----------------------------------------------------------------


def user_register(*, username: str, password: str) -> User:
    try:
        validate_password(password, user=User(username=username))
    except DjangoValidationError as exc:
        raise ValidationError({"password": list(exc.messages)}) from exc
    try:
        # The unique index on users.username decides races between two registrations.
        with transaction.atomic():
            return User.objects.create_user(username=username, password=password)
    except IntegrityError as exc:
        raise ApiError("CONFLICT", "That username is taken.") from exc


def _login_keys(username: str, ip: str | None) -> list[tuple[str, str]]:
    keys = [("login_fail_user", username.lower())]
    if ip:
        keys.append(("login_fail_ip", ip))
    return keys


def _raise_if_locked(username: str, ip: str | None) -> None:
    for scope, key in _login_keys(username, ip):
        lock = throttling.peek(f"{scope}_lock", key, window_seconds=settings.LOGIN_LOCKOUT_S)
        if not lock.allowed:
            raise rate_limited(lock.retry_in_seconds, "Too many failed log-ins; try again later.")


def _record_login_failure(username: str, ip: str | None, user: User | None) -> None:
    SecurityEvent.objects.create(
        kind=SecurityEvent.Kind.LOGIN_FAILED, user=user, ip=ip, data={"username": username[:150]}
    )
    for scope, key in _login_keys(username, ip):
        decision = throttling.hit(
            scope, key, limit=settings.LOGIN_FAILURE_LIMIT, window_seconds=settings.LOGIN_FAILURE_WINDOW_S
        )
        if decision.count >= settings.LOGIN_FAILURE_LIMIT:
            # The lock is a one-entry window: it holds for LOGIN_LOCKOUT_S, then expires by itself.
            throttling.hit(f"{scope}_lock", key, limit=1, window_seconds=settings.LOGIN_LOCKOUT_S)
            SecurityEvent.objects.create(
                kind=SecurityEvent.Kind.LOGIN_LOCKED,
                user=user,
                ip=ip,
                flagged=True,
                data={"by": scope.removeprefix("login_fail_"), "failures": decision.count},
            )
            security_log.warning(
                "security event: log-in locked",
                extra={
                    "event": "login_locked",
                    "by": scope.removeprefix("login_fail_"),
                    "ip": ip,
                    "user_id": user.pk if user else None,
                },
            )


def session_login(
    *, username: str, password: str, ip: str | None = None, user_agent: str = ""
) -> tuple[Session, str]:
    """Check credentials and open a session; returns it with the raw token (shown only once)."""
    _raise_if_locked(username, ip)
    user = User.objects.filter(username=username).first()
    if user is None or not user.check_password(password):
        _record_login_failure(username, ip, user)
        raise ApiError("INVALID_CREDENTIALS")
    if user.disabled or not user.is_active:
        raise ApiError("ACCOUNT_DISABLED")
    token = new_token()
    now = timezone.now()
    session = Session.objects.create(
        user=user,
        token_hash=hash_token(token),
        token_prefix=token[:8],
        created_at=now,
        expires_at=now + timedelta(hours=settings.AUTH_TOKEN_TTL_HOURS),
        last_used_at=now,
        ip=ip,
        user_agent=user_agent[:256],
    )
    User.objects.filter(pk=user.pk).update(last_login=now)
    return session, token


# --- Sessions -------------------------------------------------------------------------------


def _revoke(sessions, *, user_id: int, reason: str) -> list[str]:
    """Mark sessions revoked and, after commit, tell the gateway to close their streams."""
    now = timezone.now()
    ids = [str(pk) for pk in sessions.filter(revoked_at__isnull=True).values_list("pk", flat=True)]
    if ids:
        Session.objects.filter(pk__in=ids).update(revoked_at=now)
    transaction.on_commit(
        lambda: sessions_revoked.send(sender=Session, user_id=user_id, session_ids=ids, reason=reason)
    )
    return ids


@transaction.atomic
def session_logout(*, session: Session) -> None:
    _revoke(Session.objects.filter(pk=session.pk), user_id=session.user_id, reason="logout")


@transaction.atomic
def session_revoke(*, user: User, session_id: str, by: User | None = None) -> None:
    """Revoke one of `user`'s sessions; its live websockets close within a second."""
    qs = Session.objects.filter(pk=session_id, user=user, revoked_at__isnull=True)
    if not qs.exists():
        raise ApiError("NOT_FOUND", "No such session.")
    _revoke(qs, user_id=user.pk, reason="revoked")
    SecurityEvent.objects.create(
        kind=SecurityEvent.Kind.SESSION_REVOKED,
        user=user,
        data={"session_id": str(session_id), "by": by.pk if by else user.pk},
    )


@transaction.atomic
def sessions_revoke_all(*, user: User, reason: str = "revoked") -> int:
    return len(_revoke(Session.objects.filter(user=user), user_id=user.pk, reason=reason))


@transaction.atomic
def sessions_revoke_for_device(*, device_id, reason: str = "device_revoked") -> int:
    """Used by dm when a device is revoked: the sessions bound to it end."""
    qs = Session.objects.filter(device_id=device_id, revoked_at__isnull=True)
    user_ids = set(qs.values_list("user_id", flat=True))
    return sum(len(_revoke(qs.filter(user_id=uid), user_id=uid, reason=reason)) for uid in user_ids)


@transaction.atomic
def session_bind_device(*, session: Session, device_id) -> None:
    """Bind the calling session to a device; the partial unique index keeps it one-to-one."""
    Session.objects.filter(pk=session.pk).update(device_id=device_id)
    session.device_id = device_id


# --- Account state (compromised-account runbook, seed 002) ----------------------------------


@transaction.atomic
def account_disable(*, user: User, by: User | None = None, reason: str = "") -> int:
    """Disable the account, end every session and close its live websockets."""
    User.objects.filter(pk=user.pk).update(disabled=True)
    user.disabled = True
    revoked = len(_revoke(Session.objects.filter(user=user), user_id=user.pk, reason="account_disabled"))
    SecurityEvent.objects.create(
        kind=SecurityEvent.Kind.ACCOUNT_DISABLED,
        user=user,
        flagged=True,
        data={"by": by.pk if by else None, "reason": reason[:200], "sessions_revoked": revoked},
    )
    security_log.warning(
        "security event: account disabled", extra={"event": "account_disabled", "user_id": user.pk}
    )
    return revoked


@transaction.atomic
def account_enable(*, user: User, by: User | None = None) -> None:
    User.objects.filter(pk=user.pk).update(disabled=False)
    user.disabled = False
    SecurityEvent.objects.create(
        kind=SecurityEvent.Kind.ACCOUNT_ENABLED, user=user, data={"by": by.pk if by else None}
    )


# --- Contacts and blocks ----------------------------------------------------------------------


def _other_user(user_id: int, owner: User) -> User:
    if user_id == owner.pk:
        raise ApiError("BAD_REQUEST", "That is you.")
    other = User.objects.filter(pk=user_id, is_active=True).first()
    if other is None:
        raise ApiError("NOT_FOUND", "No such user.")
    return other


@transaction.atomic
def contact_add(*, owner: User, user_id: int) -> Contact:
    other = _other_user(user_id, owner)
    # uq_contacts_owner_contact makes a repeated add idempotent.
    contact, _ = Contact.objects.get_or_create(owner=owner, contact=other)
    return contact


@transaction.atomic
def contact_remove(*, owner: User, user_id: int) -> None:
    deleted, _ = Contact.objects.filter(owner=owner, contact_id=user_id).delete()
    if not deleted:
        raise ApiError("NOT_FOUND", "Not in your contacts.")


@transaction.atomic
def block_add(*, blocker: User, user_id: int) -> Block:
    other = _other_user(user_id, blocker)
    block, _ = Block.objects.get_or_create(blocker=blocker, blocked=other)
    return block


@transaction.atomic
def block_remove(*, blocker: User, user_id: int) -> None:
    deleted, _ = Block.objects.filter(blocker=blocker, blocked_id=user_id).delete()
    if not deleted:
        raise ApiError("NOT_FOUND", "You have not blocked that user.")
