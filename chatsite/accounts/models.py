"""Users, bearer-token sessions, contacts, blocks and security events.

Table and column names follow the runbooks: `users.account_id`, `users.username`,
`users.disabled` (seed 002: `UPDATE users SET disabled = true ...`), `sessions.user_id`
(seed 002: `DELETE FROM sessions WHERE user_id = ...`).
"""

from __future__ import annotations

import unicodedata
import uuid

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Lower
from django.utils import timezone

from chatsite.accounts.validators import UsernameValidator


def normalize_username(username: str) -> str:
    """The one spelling of a username: NFKC, case-folded, NFKC again (casefold can un-normalise).

    Registration, log-in, the admin and manage.py all compare this form, so `ALICE`, `Alice` and
    `ａｌｉｃｅ` (full-width) are the same name as `alice`.
    """
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).casefold())


class User(AbstractUser):
    account_id = models.BigAutoField(primary_key=True, db_column="account_id")
    # Same column as AbstractUser's, with our alphabet; the constraints below are what make it safe.
    username = models.CharField(
        "username",
        max_length=150,
        unique=True,
        help_text="3-32 characters: lower-case a-z, digits, '_', '.', '-'. Stored lower-case.",
        validators=[UsernameValidator()],
        error_messages={"unique": "A user with that username already exists."},
    )
    disabled = models.BooleanField(default=False, help_text="Disabled accounts cannot log in or connect.")

    class Meta:
        db_table = "users"
        constraints = [
            # Names are stored normalised (lower-case), so equality is case-insensitive equality;
            # the functional unique index also holds against rows written by raw SQL.
            models.UniqueConstraint(Lower("username"), name="uq_users_username_lower"),
            models.CheckConstraint(condition=Q(username=Lower("username")), name="ck_users_username_lower"),
        ]

    def __str__(self) -> str:
        return self.username

    @classmethod
    def normalize_username(cls, username):
        # Used by UserManager.create_user / createsuperuser and AbstractUser.clean().
        return normalize_username(username) if isinstance(username, str) else username


class Session(models.Model):
    """One log-in: an opaque bearer token, stored only as its SHA-256 hash.

    `device_id` is set when the session registers an E2EE device (a session is bound to at most
    one device). It is a plain column, not a foreign key, because accounts sits below the dm app.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="auth_sessions")
    token_hash = models.CharField(max_length=64, unique=True)
    token_prefix = models.CharField(max_length=8, help_text="First characters, to tell sessions apart.")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=256, blank=True, default="")
    device_id = models.UUIDField(null=True, blank=True, db_index=True)

    class Meta:
        db_table = "sessions"
        indexes = [models.Index(fields=["user", "revoked_at"], name="sessions_user_active_idx")]
        constraints = [
            # One live session per device: device-scoped calls act as that device.
            models.UniqueConstraint(
                fields=["device_id"],
                condition=Q(revoked_at__isnull=True) & Q(device_id__isnull=False),
                name="uq_sessions_live_device",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.token_prefix}…"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()


class Contact(models.Model):
    owner = models.ForeignKey(User, on_delete=models.CASCADE, related_name="contacts")
    contact = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "contacts"
        constraints = [
            models.UniqueConstraint(fields=["owner", "contact"], name="uq_contacts_owner_contact"),
            models.CheckConstraint(condition=~Q(owner=F("contact")), name="ck_contacts_not_self"),
        ]

    def __str__(self) -> str:
        return f"{self.owner_id} -> {self.contact_id}"


class Block(models.Model):
    blocker = models.ForeignKey(User, on_delete=models.CASCADE, related_name="blocks")
    blocked = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "blocks"
        constraints = [
            models.UniqueConstraint(fields=["blocker", "blocked"], name="uq_blocks_blocker_blocked"),
            models.CheckConstraint(condition=~Q(blocker=F("blocked")), name="ck_blocks_not_self"),
        ]

    def __str__(self) -> str:
        return f"{self.blocker_id} blocks {self.blocked_id}"


class SecurityEvent(models.Model):
    """An append-only audit trail: lockouts, revocations, disables, identity key changes, sessions
    bound to an existing device (and refused binds), and every operator action (bans, flag
    changes, remediations, rate-limit resets, breaker resets) with who did it and why."""

    class Kind(models.TextChoices):
        LOGIN_LOCKED = "login_locked"
        LOGIN_DELAYED = "login_delayed"
        LOGIN_FAILED = "login_failed"
        SESSION_REVOKED = "session_revoked"
        ACCOUNT_DISABLED = "account_disabled"
        ACCOUNT_ENABLED = "account_enabled"
        IDENTITY_KEY_CHANGED = "identity_key_changed"
        DEVICE_REVOKED = "device_revoked"
        DEVICE_BOUND = "device_bound"
        DEVICE_BIND_FAILED = "device_bind_failed"
        # Operator and support-staff actions (ops/, docs/operations.md): data carries "by"
        # (the staff user's id, null from manage.py without --by), "reason" and what changed.
        ACCOUNT_BANNED = "account_banned"
        FEATURE_FLAG_CHANGED = "feature_flag_changed"
        REMEDIATION_APPLIED = "remediation_applied"
        RATE_LIMIT_RESET = "rate_limit_reset"
        CIRCUIT_BREAKER_RESET = "circuit_breaker_reset"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    user = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    ip = models.GenericIPAddressField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)
    flagged = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        db_table = "security_events"
        indexes = [models.Index(fields=["user", "kind", "created_at"], name="secevt_user_kind_idx")]

    def __str__(self) -> str:
        return f"{self.kind} user={self.user_id} at {self.created_at:%Y-%m-%d %H:%M:%S}"
