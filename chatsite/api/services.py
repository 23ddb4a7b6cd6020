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

    The row lock serialises two operators changing the same flag, so the audit's "before" is
    true. For a first override there is no row to lock yet: the row is first inserted with the
    environment's value (INSERT ... ON CONFLICT DO NOTHING; a concurrent insert of the same
    primary key waits for the other transaction and then does nothing), then locked with
    select_for_update, which reads the other transaction's committed value. The placeholder is
    never visible: it is updated before this transaction commits."""
    feature = flags.lookup(name)
    flag_name = flags.FLAGS[feature].name
    FeatureFlag.objects.bulk_create(
        [FeatureFlag(name=flag_name, enabled=flags.env_default(feature), changed_by=by)],
        ignore_conflicts=True,
    )
    row = FeatureFlag.objects.select_for_update().get(name=flag_name)
    before = row.enabled
    row.enabled, row.changed_by, row.reason, row.changed_at = enabled, by, reason[:200], timezone.now()
    row.save(update_fields=["enabled", "changed_by", "reason", "changed_at"])
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
        # A missing row is generation 0 (what every process's refresher assumes too): insert it
        # if missing (ON CONFLICT DO NOTHING waits for a concurrent first insert), then the row
        # lock of UPDATE orders concurrent resets; each one bumps the generation.
        CircuitBreakerReset.objects.bulk_create(
            [CircuitBreakerReset(dependency=dep, generation=0, reset_by=by)], ignore_conflicts=True
        )
        CircuitBreakerReset.objects.filter(dependency=dep).update(
            generation=F("generation") + 1, reset_by=by, reset_at=timezone.now()
        )
    audit_record(kind=SecurityEvent.Kind.CIRCUIT_BREAKER_RESET, by=by, reason=reason, dependencies=deps)
    transaction.on_commit(lambda: [circuit.breaker(dep).reset() for dep in deps])
    return deps
