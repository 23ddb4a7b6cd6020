"""Reset one user's rate-limit windows, or flush them all (seed 002 "Flush rate limit counters":
`--scan --pattern "rl:*" | xargs DEL`, never FLUSHDB). The keys belong to chatsite.api.throttling,
which finds and removes them (SCAN + UNLINK in batches); this adds the audit row.

Redis is not transactional with PostgreSQL: the keys are removed first, then the audit row is
written saying what was removed (a failure in between leaves windows reset and unrecorded, never
a record of a reset that did not happen)."""

from __future__ import annotations

from chatsite.accounts.models import SecurityEvent, User
from chatsite.accounts.services import audit_record
from chatsite.api import throttling


def rate_limits_reset_plan(*, user: User) -> list[str]:
    """Read-only: the `rl:*` keys a reset of `user` would remove."""
    return throttling.user_window_keys(user.pk)


def rate_limits_reset(*, user: User, by: User | None, reason: str = "") -> list[str]:
    keys = throttling.reset_user(user.pk)
    audit_record(
        kind=SecurityEvent.Kind.RATE_LIMIT_RESET,
        by=by,
        reason=reason,
        user=user,
        scope="user",
        keys=keys[:100],
        removed=len(keys),
    )
    return keys


def rate_limits_flush_plan() -> dict[str, int]:
    """Read-only: how many windows each scope holds, i.e. what a flush would remove."""
    return throttling.window_counts()


def rate_limits_flush(*, by: User | None, reason: str = "") -> dict[str, int]:
    removed = throttling.flush_all()
    audit_record(
        kind=SecurityEvent.Kind.RATE_LIMIT_RESET,
        by=by,
        reason=reason,
        scope="all",
        removed=sum(removed.values()),
        by_scope=removed,
    )
    return removed
