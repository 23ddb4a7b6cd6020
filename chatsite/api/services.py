"""Operator writes of chatsite.api: runtime feature flags and circuit-breaker resets.

One function per use case, called alike by `manage.py feature_flag` / `manage.py circuit_breaker`
and by the admin (chatsite/api/admin.py). Each writes its row and its audit row
(security_events) in one transaction, so the audit exists exactly when the change does.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from chatsite.accounts.models import SecurityEvent, User
from chatsite.accounts.services import audit_record
from chatsite.api import circuit, flags
from chatsite.api.models import DEPENDENCIES, CircuitBreakerReset, FeatureFlag


@dataclass(frozen=True)
class FlagChange:
    name: str
    before: bool  # effective value before (override, else environment)
    after: bool
    source: str  # "override" or "environment" after the change


def _effective(feature: str, row: FeatureFlag | None) -> bool:
    return row.enabled if row is not None else flags.env_default(feature)


@transaction.atomic
def flag_set(*, name: str, enabled: bool, by: User | None, reason: str) -> FlagChange:
    """Override one flag (GROUPS, STATUS, PRESENCE, E2EE_DM, MESSAGE_WRITE) in every process.

    select_for_update on the flag's row (or, for a first override, the primary key's unique
    index) serialises two operators changing the same flag, so the audit's "before" is true."""
    feature = flags.lookup(name)
    flag_name = flags.FLAGS[feature].name
    row = FeatureFlag.objects.select_for_update().filter(name=flag_name).first()
    before = _effective(feature, row)
    FeatureFlag.objects.update_or_create(
        name=flag_name,
        defaults={"enabled": enabled, "changed_by": by, "reason": reason[:200], "changed_at": timezone.now()},
    )
    audit_record(
        kind=SecurityEvent.Kind.FEATURE_FLAG_CHANGED,
        by=by,
        reason=reason,
        flag=flag_name,
        before=before,
        after=enabled,
        source="override",
    )
    flags.apply_on_commit(flag_name, enabled)
    return FlagChange(flag_name, before, enabled, "override")


@transaction.atomic
def flag_clear(*, name: str, by: User | None, reason: str) -> FlagChange:
    """Drop the override: the flag follows the environment again (in every process)."""
    feature = flags.lookup(name)
    flag_name = flags.FLAGS[feature].name
    row = FeatureFlag.objects.select_for_update().filter(name=flag_name).first()
    before = _effective(feature, row)
    if row is not None:
        row.delete()
    after = flags.env_default(feature)
    audit_record(
        kind=SecurityEvent.Kind.FEATURE_FLAG_CHANGED,
        by=by,
        reason=reason,
        flag=flag_name,
        before=before,
        after=after,
        source="environment",
    )
    flags.apply_on_commit(flag_name, None)
    return FlagChange(flag_name, before, after, "environment")


@transaction.atomic
def circuit_breaker_reset(*, dependency: str | None, by: User | None, reason: str) -> list[str]:
    """Close the breaker of one dependency (or both) in every process: bumps its reset
    generation, which each process's refresher applies within FEATURE_FLAG_REFRESH_S; this
    process resets at commit. Returns the dependencies reset."""
    deps = [dependency] if dependency else list(DEPENDENCIES)
    for dep in deps:
        if dep not in DEPENDENCIES:
            raise ValueError(f"unknown dependency {dep!r}: one of {', '.join(DEPENDENCIES)}")
        # The row lock of UPDATE (or the primary key, for the first reset) orders concurrent
        # resets; each one still bumps the generation.
        updated = CircuitBreakerReset.objects.filter(dependency=dep).update(
            generation=F("generation") + 1, reset_by=by, reset_at=timezone.now()
        )
        if not updated:
            CircuitBreakerReset.objects.get_or_create(
                dependency=dep, defaults={"generation": 1, "reset_by": by}
            )
    audit_record(kind=SecurityEvent.Kind.CIRCUIT_BREAKER_RESET, by=by, reason=reason, dependencies=deps)
    transaction.on_commit(lambda: [circuit.breaker(dep).reset() for dep in deps])
    return deps
