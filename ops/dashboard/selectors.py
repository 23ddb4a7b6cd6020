"""What the staff dashboard (/admin/ops/dashboard/) shows, read from where each figure lives.

Reads only. Nothing here returns ciphertext, media references or key material: security events
are shown by kind, user, address and time (never their `data`), integrity results by count.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis
from django.conf import settings
from django.urls import NoReverseMatch, reverse
from prometheus_client import CollectorRegistry, multiprocess

from chatsite.accounts.models import SecurityEvent
from chatsite.api import circuit
from chatsite.api import flags as feature_flags
from chatsite.api.redis import get_redis
from chatsite.metrics import WS_CONNECTIONS_ACTIVE
from chatsite.realtime import live_connections
from ops import health
from ops.integrity import registry as integrity_registry
from ops.integrity.selectors import latest_results
from ops.remediations.orphans import KINDS as ORPHAN_KINDS

HEALTH_CHECKS = ("database", "redis", "celery")

# Security events that mean someone is attacking or being attacked (seed 002 "Compromised
# accounts", seed 004 "Security incident"): failed and throttled log-ins, identity key changes,
# refused device binds, disables and bans.
SECURITY_KINDS = (
    SecurityEvent.Kind.LOGIN_FAILED,
    SecurityEvent.Kind.LOGIN_LOCKED,
    SecurityEvent.Kind.LOGIN_DELAYED,
    SecurityEvent.Kind.IDENTITY_KEY_CHANGED,
    SecurityEvent.Kind.DEVICE_BIND_FAILED,
    SecurityEvent.Kind.ACCOUNT_DISABLED,
    SecurityEvent.Kind.ACCOUNT_BANNED,
)


# --- Health -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HealthRow:
    name: str
    status: str
    detail: str


def _describe(check: dict[str, Any]) -> str:
    details = {key: value for key, value in check.items() if key != "status"}
    return ", ".join(f"{key}={value}" for key, value in details.items())


def health_rows() -> list[HealthRow]:
    """PostgreSQL, Redis and Celery through the same checks as /health (ops.health), with their
    details (latency, pool, workers): staff may see what the public probe hides."""
    checks = health.run_checks(*HEALTH_CHECKS)
    return [HealthRow(name, check["status"], _describe(check)) for name, check in checks.items()]


# --- Circuit breaker ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BreakerRow:
    name: str
    state: str
    detail: str


def breaker_rows() -> list[BreakerRow]:
    """The circuit breakers around PostgreSQL and Redis (chatsite/api/circuit.py) as this process
    sees them: state is per process, and a reset reaches every process within
    FEATURE_FLAG_REFRESH_S."""
    return [
        BreakerRow(name, str(state["state"]), _describe(state)) for name, state in circuit.snapshot().items()
    ]


# --- Integrity ----------------------------------------------------------------------------------

# Where support staff find the offending rows of each check: an admin changelist, filtered by a
# list_filter that the app's admin.py defines for exactly this question, so that the list holds
# exactly the check's violations (tests/ops/dashboard/test_offending_rows.py creates offending and
# healthy rows for each and compares the counts). Keyed by the check names of
# ops/integrity/registry.py. No link where no filter can match the check exactly:
# - orphans: their parent row is gone, so no admin page can show them (`clear_orphans` is the way);
# - group_participants_duplicate, dm_messages_duplicate, group_messages_duplicate: a check
#   violation is a (key) pair, not a row; a unique index forbids them, so a changelist filter
#   would be dead code. `manage.py integrity_check --json` lists the pairs;
# - group_messages_unexpected_epoch and identity_key_changes_burst: an aggregate (HAVING) per
#   group or per user; `integrity_check --json` lists the group and user ids.
OFFENDING_ROWS: dict[str, tuple[str, str]] = {
    "groups_without_owner": ("admin:groups_group_changelist", "has_owner=no"),
    "groups_over_capacity": ("admin:groups_group_changelist", "capacity=over"),
    "group_invites_over_max_uses": ("admin:groups_invite_changelist", "uses=over"),
    "status_posts_expired_uncleaned": ("admin:status_statuspost_changelist", "expired=uncleaned"),
    "presence_stuck_online": ("admin:presence_userpresence_changelist", "stuck=yes"),
    "otpk_pool_critical": ("admin:dm_device_changelist", "pool=critical"),
    "otpk_pool_low": ("admin:dm_device_changelist", "pool=low"),
    "signed_prekey_stale": ("admin:dm_device_changelist", "signed_prekey=stale"),
    "dm_undelivered_stale": ("admin:dm_message_changelist", "undelivered=stale"),
    "sender_keys_unacked": ("admin:groups_senderkeyenvelope_changelist", "pending=stale"),
}

# Where the remediation of a check is a button rather than only a command: the Remediations page
# (ops/remediations/views.py) or the admin changelist whose action repairs the listed rows.
REMEDIATION_PAGES: dict[str, tuple[str, str]] = {
    **{f"orphaned_{kind}": ("ops-remediations", "") for kind in ORPHAN_KINDS},
    "group_participants_duplicate": ("ops-remediations", ""),
    # The "Promote owner" action of the Groups list, on the groups the check finds.
    "groups_without_owner": ("admin:groups_group_changelist", "has_owner=no"),
}


@dataclass(frozen=True)
class IntegrityRow:
    check_name: str
    severity: str
    violations: int
    error: str
    duration_ms: float
    checked_at: datetime
    rows_url: str | None = None
    remediation: str = ""
    remediation_url: str | None = None
    runbook: str = ""
    finds: str = ""

    @property
    def failing(self) -> bool:
        return self.violations > 0 or bool(self.error)


def _changelist_url(check_name: str) -> str | None:
    target = OFFENDING_ROWS.get(check_name)
    if target is None:
        return None
    name, query = target
    try:
        url = reverse(name)
    except NoReverseMatch:  # that model is not in the admin (yet)
        return None
    return f"{url}?{query}" if query else url


def _command(remediation: str | None) -> str:
    return f"python manage.py {remediation}" if remediation else ""


def _remediation_page(check_name: str) -> str | None:
    target = REMEDIATION_PAGES.get(check_name)
    if target is None:
        return None
    name, query = target
    try:
        url = reverse(name)
    except NoReverseMatch:  # not routed (yet)
        return None
    return f"{url}?{query}" if query else url


def integrity_rows() -> list[IntegrityRow]:
    """The latest stored result of every check in the registry (ops.integrity.selectors
    .latest_results: results of checks since removed are left out), failing and critical ones
    first."""
    rows = []
    for result in latest_results():
        check = integrity_registry.BY_NAME[result.check_name]
        rows.append(
            IntegrityRow(
                check_name=result.check_name,
                severity=result.severity,
                violations=result.violations,
                error=result.error,
                duration_ms=result.duration_ms,
                checked_at=result.checked_at,
                rows_url=_changelist_url(result.check_name),
                remediation=_command(check.remediation),
                remediation_url=_remediation_page(result.check_name),
                runbook=check.runbook,
                finds=check.finds,
            )
        )
    rows.sort(key=lambda r: (not r.failing, r.severity != "critical", r.check_name))
    return rows


# --- Feature flags ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlagRow:
    name: str
    setting: str
    enabled: bool
    source: str = ""


def flag_rows() -> list[FlagRow]:
    """Every feature flag (chatsite/api/flags.py FLAGS) and whether it is on now, as the API sees
    it: the runtime override where an operator set one, else the environment's default."""
    rows = []
    for key, flag in feature_flags.FLAGS.items():
        overridden = feature_flags.override_of(key) is not None
        rows.append(
            FlagRow(
                name=getattr(flag, "name", key),
                setting=flag.setting,
                enabled=feature_flags.is_enabled(key),
                source="runtime override" if overridden else "environment",
            )
        )
    return rows


# --- Active connections -------------------------------------------------------------------------


@dataclass
class Connections:
    # websocket_connections_active (chatsite/metrics.py) by transport, summed over this host's
    # processes when PROMETHEUS_MULTIPROC_DIR is set (as /metrics does), else this process's.
    host_by_transport: dict[str, int] = field(default_factory=dict)
    host_scope: str = "this process"
    # Every process's streams: the live connection records in Redis
    # (chatsite/realtime/live_connections.py), read up to OPS_DASHBOARD_MAX_CONNECTION_RECORDS.
    cluster_streams: int | None = None
    cluster_users: int | None = None
    cluster_by_transport: dict[str, int] = field(default_factory=dict)
    cluster_complete: bool = True
    cluster_error: str = ""

    @property
    def host_total(self) -> int:
        return sum(self.host_by_transport.values())


def _gauge_by_transport() -> tuple[dict[str, int], str]:
    if directory := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Every process's samples from the files there (not the state collectors, which query).
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
        families, scope = registry.collect(), "this host (all processes)"
    else:
        families, scope = WS_CONNECTIONS_ACTIVE.collect(), "this process"
    counts: dict[str, int] = {}
    for family in families:
        if family.name != "websocket_connections_active":
            continue
        for sample in family.samples:
            transport = sample.labels.get("transport", "")
            counts[transport] = counts.get(transport, 0) + int(sample.value)
    return counts, scope


def connections() -> Connections:
    counts, scope = _gauge_by_transport()
    result = Connections(host_by_transport=counts, host_scope=scope)
    if get_redis() is None:
        result.cluster_error = "REDIS_URL unset (embedded mode): streams are counted per process only"
        return result
    limit = settings.OPS_DASHBOARD_MAX_CONNECTION_RECORDS
    try:
        records = live_connections.snapshot(max_records=limit)
    except (redis.RedisError, OSError, RuntimeError) as exc:
        result.cluster_error = f"Redis unreachable ({type(exc).__name__})"
        return result
    by_transport: dict[str, int] = {}
    for record in records:
        by_transport[record.get("transport", "")] = by_transport.get(record.get("transport", ""), 0) + 1
    result.cluster_streams = len(records)
    result.cluster_users = len({record["user_id"] for record in records})
    result.cluster_by_transport = by_transport
    result.cluster_complete = len(records) < limit
    return result


# --- Security events ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SecurityRow:
    id: int
    kind: str
    kind_label: str
    username: str | None
    user_id: int | None
    ip: str | None
    flagged: bool
    created_at: datetime


def recent_security_events(*, limit: int | None = None) -> list[SecurityRow]:
    """The latest failed log-ins, identity key changes, refused binds, disables and bans. Only
    the columns; `data` is never read here (it may carry reasons and identifiers, not for a
    wall display). Served by security_events' created_at index, newest first."""
    limit = limit if limit is not None else settings.OPS_DASHBOARD_SECURITY_EVENTS
    events = (
        SecurityEvent.objects.filter(kind__in=SECURITY_KINDS)
        .select_related("user")
        .only("id", "kind", "user__username", "ip", "flagged", "created_at")
        .order_by("-created_at", "-id")[:limit]
    )
    return [
        SecurityRow(
            id=e.id,
            kind=e.kind,
            kind_label=e.get_kind_display(),
            username=e.user.username if e.user_id else None,
            user_id=e.user_id,
            ip=e.ip,
            flagged=e.flagged,
            created_at=e.created_at,
        )
        for e in events
    ]


def dashboard() -> dict[str, Any]:
    """Everything the dashboard page shows, one selector per section."""
    return {
        "health": health_rows(),
        "breakers": breaker_rows(),
        "integrity": integrity_rows(),
        "flags": flag_rows(),
        "connections": connections(),
        "security_events": recent_security_events(),
        "security_kinds": [str(kind) for kind in SECURITY_KINDS],
    }
