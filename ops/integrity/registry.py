"""The one registry of integrity checks: what a check is, and every check by name.

A check is the runbook's detection query turned into one SELECT that lists the offending rows,
one id per row (`offending_sql`). The runner counts them (`SELECT count(*) FROM (...)`) on every
run and lists up to INTEGRITY_SAMPLE_SIZE of them on demand (`--json`, the staff dashboard).
Thresholds are settings, passed as named parameters (see `query_params`), never literals.

Every check names the index its plan uses (`index`, None for a sequential pass; read from
EXPLAIN ANALYZE on a database of 2M direct messages, 1M group messages and 500k participants,
docs/operations.md; tests/ops/integrity/test_registry.py checks each named index exists) and how
its cost grows (`cost`). docs/operations.md
"Integrity checks" is generated from this registry (`manage.py integrity_check --doc`).

Checks whose rows a constraint already forbids (a unique index, a foreign key, a CHECK) still
run the runbook's query: it stays true after manual SQL, a restore, or triggers disabled
(`session_replication_role = replica` skips foreign keys), and costs one index pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

CRITICAL = "critical"
WARNING = "warning"
SEVERITIES = (CRITICAL, WARNING)


@dataclass(frozen=True)
class Check:
    name: str
    severity: str
    finds: str  # what an offending row is, for the docs and the dashboard
    subject: str  # what the listed ids are ("group id", "device id", ...)
    offending_sql: str  # SELECT <one id column> ...: one row per offence
    runbook: str  # "seed 000 §<section>": the runbook section this check answers
    index: str | None  # the index the plan uses (None: no index, see `cost`)
    cost: str  # how the query scales and what bounds it
    remediation: str | None = None  # the manage.py command line that repairs it, if one exists
    guarded_by: str | None = None  # the constraint that should make a violation impossible

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"{self.name}: severity must be one of {SEVERITIES}")

    @property
    def count_sql(self) -> str:
        return f"SELECT count(*) FROM ({self.offending_sql}) AS offending"  # noqa: S608 (registry constants)

    @property
    def sample_sql(self) -> str:
        sql = self.offending_sql  # a registry constant, never input
        return f"SELECT offending.id::text FROM ({sql}) AS offending LIMIT %(limit)s"  # noqa: S608


def query_params(now: datetime | None = None) -> dict[str, Any]:
    """The named parameters every check's SQL may use, from settings."""
    now = now or timezone.now()
    return {
        "now": now,
        "otpk_critical": settings.E2EE_OTPK_CRITICAL,
        "otpk_low": settings.E2EE_OTPK_LOW_WATERMARK,
        "signed_prekey_before": now - timedelta(days=settings.E2EE_SIGNED_PREKEY_MAX_AGE_DAYS),
        "identity_since": now - timedelta(days=1),
        "identity_max": settings.E2EE_IDENTITY_CHANGES_FLAG_PER_DAY,
        "undelivered_before": now - timedelta(seconds=settings.INTEGRITY_UNDELIVERED_AFTER_S),
        "sender_key_before": now - timedelta(seconds=settings.INTEGRITY_SENDER_KEY_UNACKED_AFTER_S),
        "presence_before": now - timedelta(seconds=settings.INTEGRITY_PRESENCE_STUCK_AFTER_S),
        "status_expired_before": now - timedelta(seconds=settings.INTEGRITY_STATUS_EXPIRED_GRACE_S),
    }


def _orphan(
    kind: str,
    table: str,
    alias: str,
    fk: str,
    parent: str,
    index: str | None,
    runbook: str,
    remediation: str | None = "clear_orphans --kind {kind}",
) -> Check:
    return Check(
        name=f"orphaned_{kind}",
        severity=WARNING,
        finds=f"`{table}` rows whose `{fk}` names no row of `{parent}`",
        subject=f"{table} id",
        offending_sql=(
            f"SELECT {alias}.id FROM {table} {alias} "  # noqa: S608 (names from this module)
            f"LEFT JOIN {parent} p ON {alias}.{fk} = p.id WHERE p.id IS NULL"
        ),
        runbook=runbook,
        index=index,
        cost=f"anti-join of `{table}` with `{parent}`: one pass, O(rows of both)",
        remediation=remediation.format(kind=kind) if remediation else None,
        guarded_by=f"foreign key {table}.{fk} -> {parent}.id",
    )


CHECKS: tuple[Check, ...] = (
    Check(
        name="groups_without_owner",
        severity=CRITICAL,
        finds="groups with no participant whose role is `owner` (an orphaned group)",
        subject="group id",
        # Seed 000 "Troubleshooting Commands: Find groups without owners", unchanged.
        offending_sql=(
            "SELECT g.id FROM groups g "
            "LEFT JOIN group_participants gp ON g.id = gp.group_id AND gp.role = 'owner' "
            "WHERE gp.user_id IS NULL"
        ),
        runbook="seed 000 §Owner leaves group (409 OWNER_REQUIRED)",
        index="uq_group_participants_one_owner",
        cost="anti-join of `groups` with the partial owner index: O(groups)",
        remediation="promote_group_owner GROUP_ID",
    ),
    Check(
        name="groups_over_capacity",
        severity=CRITICAL,
        finds="groups with more non-banned participants than `max_participants` (DATA CORRUPTION)",
        subject="group id",
        # Seed 000 "Check group capacity" for every group, keeping those with count > max.
        offending_sql=(
            "SELECT g.id FROM groups g "
            "JOIN group_participants gp ON g.id = gp.group_id AND gp.is_banned = false "
            "GROUP BY g.id HAVING COUNT(gp.user_id) > g.max_participants"
        ),
        runbook="seed 000 §Users cannot join groups (409 GROUP_FULL)",
        index=None,
        cost="hash join and aggregate over all of `group_participants`: one pass, O(participants)",
        guarded_by="ck_groups_member_count with the capacity check under the group's row lock",
    ),
    Check(
        name="group_participants_duplicate",
        severity=CRITICAL,
        finds="(group, user) pairs with more than one `group_participants` row",
        subject="group_id:user_id",
        # Seed 000 "Check for duplicate participants", unchanged.
        offending_sql=(
            "SELECT group_id::text || ':' || user_id::text AS id FROM group_participants "
            "GROUP BY group_id, user_id HAVING COUNT(*) > 1"
        ),
        runbook="seed 000 §Concurrent add/remove causing duplicates",
        index="uq_group_participants_group_user",
        cost="index-only pass over the unique index: O(participants)",
        remediation="dedupe_participants",
        guarded_by="uq_group_participants_group_user",
    ),
    Check(
        name="group_invites_over_max_uses",
        severity=CRITICAL,
        finds="invites redeemed more often than `max_uses`",
        subject="group_invites id",
        # Seed 000 "Concurrent invite redemption": "If uses > max_uses: Data corruption".
        offending_sql=(
            "SELECT gi.id FROM group_invites gi WHERE gi.max_uses IS NOT NULL AND gi.uses > gi.max_uses"
        ),
        runbook="seed 000 §Concurrent invite redemption",
        index=None,
        cost="sequential scan of `group_invites`, which the invite purge keeps to about "
        "GROUP_INVITE_TTL_HOURS + a day of invites",
        guarded_by="ck_group_invites_uses",
    ),
    _orphan(
        "group_delivery",
        "group_delivery",
        "gd",
        "message_id",
        "group_messages",
        "group_delivery_message_id_3efa759e",
        "seed 000 §Orphaned records",
    ),
    _orphan(
        "status_audience",
        "status_audience",
        "sa",
        "post_id",
        "status_posts",
        None,
        "seed 000 §Orphaned records",
    ),
    _orphan(
        "status_views",
        "status_views",
        "sv",
        "post_id",
        "status_posts",
        None,
        "seed 000 §Orphaned records",
    ),
    _orphan(
        "dm_delivery",
        "dm_delivery",
        "dd",
        "message_id",
        "dm_messages",
        "dm_delivery_message_id_ed00c05e",
        "seed 000 §Orphaned records",
    ),
    # Seed 004 "Check for orphaned messages (conversation doesn't exist)". No clear_orphans kind:
    # a message row is what a member's device still has to fetch; deleting it is a decision.
    _orphan(
        "dm_messages",
        "dm_messages",
        "dm",
        "conversation_id",
        "dm_conversations",
        "dm_messages_conversation_id_b6e4b366",
        "seed 004 §Runbook 6: Data Corruption",
        remediation=None,
    ),
    Check(
        name="dm_messages_duplicate",
        severity=CRITICAL,
        finds="direct messages stored twice with the same (sender device, client message id)",
        subject="sender_device_id:client_message_id",
        # Seed 004 "Runbook 6: Data Corruption", "Check for duplicate messages", on our key.
        # A deleted device leaves sender_device_id NULL; those rows are not duplicates.
        offending_sql=(
            "SELECT sender_device_id::text || ':' || client_message_id AS id FROM dm_messages "
            "WHERE sender_device_id IS NOT NULL "
            "GROUP BY sender_device_id, client_message_id HAVING COUNT(*) > 1"
        ),
        runbook="seed 004 §Runbook 6: Data Corruption",
        index="uq_dm_messages_client_id",
        cost="index-only pass over the unique index: O(dm messages kept by retention)",
        guarded_by="uq_dm_messages_client_id",
    ),
    Check(
        name="group_messages_duplicate",
        severity=CRITICAL,
        finds="group messages stored twice with the same (sender device, client message id)",
        subject="sender_device_id:client_message_id",
        offending_sql=(
            "SELECT sender_device_id::text || ':' || client_message_id AS id FROM group_messages "
            "WHERE sender_device_id IS NOT NULL "
            "GROUP BY sender_device_id, client_message_id HAVING COUNT(*) > 1"
        ),
        runbook="seed 004 §Runbook 6: Data Corruption",
        index="uq_group_messages_client_id",
        cost="index-only pass over the unique index: O(group messages kept by retention)",
        guarded_by="uq_group_messages_client_id",
    ),
    Check(
        name="group_messages_unexpected_epoch",
        severity=WARNING,
        finds="groups holding messages from an epoch the group has not reached (a rolled-back or "
        "stuck epoch bump); messages spanning several past epochs are normal after membership changes",
        subject="group id",
        # Seed 000 "Find groups with epoch issues", with HAVING narrowed from "more than one
        # epoch" (true of every group whose membership ever changed) to "an epoch ahead of the group".
        offending_sql=(
            "SELECT g.id FROM groups g JOIN group_messages gm ON g.id = gm.group_id "
            "GROUP BY g.id, g.group_epoch HAVING MAX(gm.group_epoch) > g.group_epoch"
        ),
        runbook="seed 000 §Messages failing with 409 EPOCH_STALE",
        index=None,
        cost="hash join and aggregate over all of `group_messages`: one pass, O(group messages kept "
        "by retention)",
    ),
    Check(
        name="status_posts_expired_uncleaned",
        severity=WARNING,
        finds="status posts expired more than INTEGRITY_STATUS_EXPIRED_GRACE_S ago and still stored "
        "(the cleanup job is not keeping up)",
        subject="status_posts id",
        # Seed 000 "Find expired status posts", after the cleanup's grace.
        offending_sql="SELECT id FROM status_posts WHERE expires_at < %(status_expired_before)s",
        runbook="seed 000 §Status posts not appearing in feed",
        index="status_posts_expires_at",
        cost="range scan of the expiry index: O(offending rows)",
        remediation="run_job status-cleanup-expired",
    ),
    Check(
        name="presence_stuck_online",
        severity=WARNING,
        finds="users shown online (`device_online`) whose `last_seen_at` is older than "
        "INTEGRITY_PRESENCE_STUCK_AFTER_S (the presence sweep is not clearing them)",
        subject="user id",
        offending_sql=(
            "SELECT up.user_id AS id FROM user_presence up WHERE up.device_online "
            "AND (up.last_seen_at IS NULL OR up.last_seen_at < %(presence_before)s)"
        ),
        runbook="seed 000 §Presence not updating (last_seen_at stale)",
        index="user_presence_online_seen_idx",
        cost="range scan of the partial index of online users: O(online users)",
        remediation="run_job presence-sweep",
    ),
    Check(
        name="otpk_pool_critical",
        severity=CRITICAL,
        finds="active devices with fewer than E2EE_OTPK_CRITICAL (5) one-time prekeys",
        subject="device id",
        # Seed 001 "Stuck Device Remediation: Identify Affected Devices", threshold from settings.
        offending_sql=(
            "SELECT d.device_id AS id FROM e2ee_devices d "
            "JOIN e2ee_key_bundles kb ON d.device_id = kb.device_id "
            "WHERE kb.prekeys_remaining < %(otpk_critical)s AND d.status = 'active'"
        ),
        runbook="seed 001 §Stuck Device Remediation",
        index="e2ee_key_bundles_remaining_idx",
        cost="range scan of the pool-size index: O(offending devices)",
    ),
    Check(
        name="otpk_pool_low",
        severity=WARNING,
        finds="active devices with fewer than E2EE_OTPK_LOW_WATERMARK (10) one-time prekeys "
        "(includes the critical ones, as the runbook's warning alert does)",
        subject="device id",
        offending_sql=(
            "SELECT d.device_id AS id FROM e2ee_devices d "
            "JOIN e2ee_key_bundles kb ON d.device_id = kb.device_id "
            "WHERE kb.prekeys_remaining < %(otpk_low)s AND d.status = 'active'"
        ),
        runbook="seed 001 §Stuck Device Remediation",
        index="e2ee_key_bundles_remaining_idx",
        cost="range scan of the pool-size index: O(offending devices)",
    ),
    Check(
        name="signed_prekey_stale",
        severity=WARNING,
        finds="active devices whose signed prekey is older than E2EE_SIGNED_PREKEY_MAX_AGE_DAYS (90)",
        subject="device id",
        offending_sql=(
            "SELECT d.device_id AS id FROM e2ee_devices d "
            "JOIN e2ee_key_bundles kb ON d.device_id = kb.device_id "
            "WHERE kb.signed_prekey_uploaded_at < %(signed_prekey_before)s AND d.status = 'active'"
        ),
        runbook="seed 001 §Monitoring and Alerting Setup",
        index="e2ee_key_bundles_spk_age_idx",
        cost="range scan of the upload-time index: O(offending devices)",
    ),
    Check(
        name="identity_key_changes_burst",
        severity=CRITICAL,
        finds="users with more than E2EE_IDENTITY_CHANGES_FLAG_PER_DAY (2) identity key changes "
        "in the last 24 hours",
        subject="user id",
        offending_sql=(
            "SELECT se.user_id AS id FROM security_events se "
            "WHERE se.kind = 'identity_key_changed' AND se.created_at >= %(identity_since)s "
            "AND se.user_id IS NOT NULL "
            "GROUP BY se.user_id HAVING COUNT(*) > %(identity_max)s"
        ),
        runbook="seed 001 §Monitoring and Alerting Setup",
        index="security_events_created_at_527b4979",
        cost="range scan of the last 24 hours of `security_events`: O(events of a day)",
    ),
    Check(
        name="dm_undelivered_stale",
        severity=WARNING,
        finds="direct messages with a device copy queued more than INTEGRITY_UNDELIVERED_AFTER_S (5 "
        "minutes) ago and not acknowledged; devices that are simply offline count too, so watch "
        "the trend",
        subject="dm_messages id",
        # Seed 001 "Check Redis lag (if stored in DB)", turned round to the older messages.
        offending_sql=(
            "SELECT DISTINCT d.message_id AS id FROM dm_delivery d "
            "WHERE d.delivered_at IS NULL AND d.created_at < %(undelivered_before)s"
        ),
        runbook="seed 001 §Redis Outage Procedures",
        index="dm_delivery_pending_idx",
        cost="pass over the partial index of unacknowledged deliveries: O(queued deliveries)",
    ),
    Check(
        name="sender_keys_unacked",
        severity=WARNING,
        finds="sender-key envelopes not acknowledged by their device INTEGRITY_SENDER_KEY_UNACKED_AFTER_S "
        "(5 minutes) after distribution",
        subject="group_sender_key_envelopes id",
        offending_sql=(
            "SELECT e.id FROM group_sender_key_envelopes e "
            "WHERE e.acked_at IS NULL AND e.created_at < %(sender_key_before)s"
        ),
        runbook="seed 000 §Missing sender keys (409 SENDER_KEY_REQUIRED)",
        index="group_skenv_unacked_idx",
        cost="range scan of the partial index of unacknowledged envelopes: O(offending rows)",
    ),
)

BY_NAME: dict[str, Check] = {check.name: check for check in CHECKS}
assert len(BY_NAME) == len(CHECKS), "check names must be unique"


def get(name: str) -> Check:
    """The check called `name`; KeyError otherwise."""
    return BY_NAME[name]
