"""Writes for accounts: one transactional function per use case.

The API, the admin and manage.py all call these; none of them repeats a rule.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from chatsite.accounts import login_throttle, selectors
from chatsite.accounts.models import Block, Contact, SecurityEvent, Session, User, normalize_username
from chatsite.accounts.signals import account_disabled, sessions_revoked
from chatsite.accounts.tokens import hash_token, new_token
from chatsite.accounts.validators import UsernameValidator
from chatsite.api import throttling
from chatsite.api.errors import ApiError
from chatsite.metrics import AUTH_LOGIN_FAILURES

security_log = logging.getLogger("chatsite.security")


# --- Registration and log-in ----------------------------------------------------------------


def user_register(*, username: str, password: str, ip: str | None = None) -> User:
    """Create an account. The name is normalised first, then must fit the alphabet. Per address
    (REGISTRATIONS_PER_IP_PER_HOUR), so new accounts cannot multiply the per-user limits."""
    if ip:
        throttling.check(
            "register",
            ip,
            limit=settings.REGISTRATIONS_PER_IP_PER_HOUR,
            window_seconds=3600,
            detail="Too many accounts registered from this address; try again later.",
        )
    username = normalize_username(username)
    try:
        UsernameValidator()(username)
    except DjangoValidationError as exc:
        raise ValidationError({"username": list(exc.messages)}) from exc
    try:
        validate_password(password, user=User(username=username))
    except DjangoValidationError as exc:
        raise ValidationError({"password": list(exc.messages)}) from exc
    try:
        # uq_users_username_lower (a unique index on lower(username)) decides races between two
        # registrations of the same name in any case.
        with transaction.atomic():
            return User.objects.create_user(username=username, password=password)
    except IntegrityError as exc:
        raise ApiError("CONFLICT", "That username is taken.") from exc


def login_authenticate(*, username: str, password: str, ip: str | None, channel: str) -> User:
    """Check a log-in attempt under the throttling policy; the API and the admin both call this.

    Raises RATE_LIMITED (a lock or delay applies; no password is checked), ACCOUNT_DISABLED (403
    whatever the password, so a disabled account never confirms one) or INVALID_CREDENTIALS.
    """
    normalised = normalize_username(username)
    user = User.objects.filter(username=normalised).first()
    account = login_throttle.account_key(user=user, normalised=normalised)
    known = login_throttle.is_known_pair(user=user, ip=ip)
    login_throttle.raise_if_refused(account=account, ip=ip, known=known)
    if user is not None and (user.disabled or not user.is_active):
        raise ApiError("ACCOUNT_DISABLED")
    if user is None:
        # Run the hasher anyway, as Django's ModelBackend does, so an unknown name costs the same
        # time as a wrong password and the answer's timing does not tell which names exist.
        make_password(password)
        ok = False
    else:
        ok = user.check_password(password)
    if not ok:
        # The attempted name is kept only as the user FK (it names an account) or as a keyed
        # hash: a password typed into the username field must not be stored or shown.
        data = {"channel": channel}
        if user is None:
            data |= {
                "username_hmac": login_throttle.username_digest(normalised),
                "username_length": len(username),
            }
        SecurityEvent.objects.create(kind=SecurityEvent.Kind.LOGIN_FAILED, user=user, ip=ip, data=data)
        AUTH_LOGIN_FAILURES.labels(channel=channel).inc()  # the failed-auth spike alert
        login_throttle.record_failure(account=account, ip=ip, user=user, channel=channel)
        raise ApiError("INVALID_CREDENTIALS")
    login_throttle.remember_success(user=user, ip=ip)
    return user


def session_login(
    *, username: str, password: str, ip: str | None = None, user_agent: str = ""
) -> tuple[Session, str]:
    """Check credentials and open a session; returns it with the raw token (shown only once)."""
    user = login_authenticate(username=username, password=password, ip=ip, channel="api")
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


# --- Audit trail of operator actions --------------------------------------------------------


def audit_record(
    *,
    kind: str,
    by: User | None,
    reason: str = "",
    user: User | None = None,
    flagged: bool = False,
    **data,
) -> SecurityEvent:
    """One audit row for an operator or support-staff action: who (`by`, None from a shell
    without one), why (`reason`) and what (`data`: ids and counts, never content or keys).
    Call it inside the action's transaction so the row exists exactly when the change does."""
    return SecurityEvent.objects.create(
        kind=kind,
        user=user,
        flagged=flagged,
        data={"by": by.pk if by else None, "reason": reason[:200], **data},
    )


# --- Account state (compromised-account runbook, seed 002) ----------------------------------


@transaction.atomic
def account_disable(*, user: User, by: User | None = None, reason: str = "") -> int:
    """Disable the account, end every session and close its live websockets."""
    User.objects.filter(pk=user.pk).update(disabled=True)
    user.disabled = True
    account_disabled.send(sender=User, user_id=user.pk)
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


def _charge_user_lookup(owner: User) -> None:
    """One look-up of another user (by id or by name) against the owner's shared budget,
    CONTACT_ADDS_PER_USER_PER_HOUR (scope `user_ref_add`): each answer ties an id to a username,
    so together they must not add up to a way of listing users."""
    throttling.check(
        "user_ref_add",
        owner.pk,
        limit=settings.CONTACT_ADDS_PER_USER_PER_HOUR,
        window_seconds=3600,
        detail="Too many users looked up; try again later.",
    )


def user_reference(*, owner: User, user_id: int) -> User:
    """Another user named by id, for a contact, a block or a new conversation: each answer shows
    a username, so these share one per-user budget with `user_lookup` (_charge_user_lookup), and
    disabled or inactive accounts do not exist here (404)."""
    _charge_user_lookup(owner)
    if user_id == owner.pk:
        raise ApiError("BAD_REQUEST", "That is you.")
    other = User.objects.filter(pk=user_id, is_active=True, disabled=False).first()
    if other is None:
        raise ApiError("NOT_FOUND", "No such user.")
    return other


def user_lookup(*, owner: User, username: str) -> User:
    """A user's id from their exact username (GET /users/lookup), after log-in's normalisation.

    Charged to the same budget as contacts, blocks and new conversations before anything is
    read, so a miss costs as much as a hit; exact names only, and an unknown, disabled or
    inactive account is the same 404."""
    _charge_user_lookup(owner)
    user = selectors.active_user_by_username(username)
    if user is None:
        raise ApiError("NOT_FOUND", "No such user.")
    return user


@transaction.atomic
def contact_add(*, owner: User, user_id: int) -> Contact:
    other = user_reference(owner=owner, user_id=user_id)
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
    other = user_reference(owner=blocker, user_id=user_id)
    block, _ = Block.objects.get_or_create(blocker=blocker, blocked=other)
    return block


@transaction.atomic
def block_remove(*, blocker: User, user_id: int) -> None:
    deleted, _ = Block.objects.filter(blocker=blocker, blocked_id=user_id).delete()
    if not deleted:
        raise ApiError("NOT_FOUND", "You have not blocked that user.")
