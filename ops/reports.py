"""Read-only reports for operators (selectors): the runbooks' investigation queries as one call.

Metadata only, always: counts, ids, usernames, times, addresses and user agents. No report reads
a ciphertext or key column (the queries select the columns they show, never whole rows), so
nothing here can print one.

- `top_senders`: seed 001 "Identify Abusive User" / "Review Metadata Patterns" (frequency,
  recipients, timing), over direct and group messages.
- `connections`: seed 004 runbook 2 "Connection Storms" (sources by address, by user agent, by
  user) from chatsite.realtime.live_connections.
- `low_prekeys`: seed 001 "Stuck Device Remediation" (devices with low OTPK pools).
- `delivery`: seed 001 "Post-Recovery Verification" (stored vs delivered in a window).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from chatsite.accounts.models import User
from chatsite.realtime import live_connections
from dm.models import Delivery, Device, Message
from groups.models import PROTO_MESSAGE, PROTO_SENDER_KEY, GroupMessage, SenderKeyEnvelope


def top_senders(*, hours: float = 1.0, limit: int = 10, now: datetime | None = None) -> list[dict[str, Any]]:
    """The users who sent the most messages (direct and group) in the last `hours`: how many,
    to how many conversations and groups, first and last send. Uses the (sender_user,
    created_at) indexes of dm_messages and group_messages."""
    since = (now or timezone.now()) - timedelta(hours=hours)
    rows: dict[int, dict[str, Any]] = {}

    def merge(uid: int, **fields: Any) -> None:
        row = rows.setdefault(
            uid,
            {"user_id": uid, "dm_messages": 0, "dm_recipients": 0, "group_messages": 0, "groups": 0},
        )
        first, last = fields.pop("first"), fields.pop("last")
        row["first_sent_at"] = min(filter(None, (row.get("first_sent_at"), first)))
        row["last_sent_at"] = max(filter(None, (row.get("last_sent_at"), last)))
        row.update(fields)

    dm = (
        Message.objects.filter(created_at__gte=since)
        .values("sender_user_id")
        .annotate(
            n=Count("id"),
            peers=Count("conversation_id", distinct=True),
            first=Min("created_at"),
            last=Max("created_at"),
        )
    )
    for r in dm:
        merge(
            r["sender_user_id"],
            dm_messages=r["n"],
            dm_recipients=r["peers"],
            first=r["first"],
            last=r["last"],
        )
    group = (
        GroupMessage.objects.filter(created_at__gte=since, proto=PROTO_MESSAGE, sender_user__isnull=False)
        .values("sender_user_id")
        .annotate(
            n=Count("id"),
            groups=Count("group_id", distinct=True),
            first=Min("created_at"),
            last=Max("created_at"),
        )
    )
    for r in group:
        merge(
            r["sender_user_id"], group_messages=r["n"], groups=r["groups"], first=r["first"], last=r["last"]
        )
    top = sorted(rows.values(), key=lambda r: (-(r["dm_messages"] + r["group_messages"]), r["user_id"]))[
        :limit
    ]
    names = dict(User.objects.filter(pk__in=[r["user_id"] for r in top]).values_list("pk", "username"))
    for r in top:
        r["username"] = names.get(r["user_id"], "")
        r["total"] = r["dm_messages"] + r["group_messages"]
        span = (r["last_sent_at"] - r["first_sent_at"]).total_seconds()
        r["per_minute"] = round(r["total"] / max(span / 60, 1.0), 1)
    return top


def connections(*, limit: int = 20) -> dict[str, Any]:
    """Live streams in every process, grouped by source address, user agent, user and transport
    (top `limit` of each). Raises RuntimeError without Redis."""
    records = live_connections.snapshot()
    by_user = Counter(r["user_id"] for r in records).most_common(limit)
    names = dict(User.objects.filter(pk__in=[uid for uid, _ in by_user]).values_list("pk", "username"))
    return {
        "total": len(records),
        "by_transport": dict(Counter(r.get("transport", "") for r in records).most_common()),
        "by_ip": Counter(r.get("ip") or "(unknown)" for r in records).most_common(limit),
        "by_user_agent": Counter(r.get("user_agent") or "(none)" for r in records).most_common(limit),
        "by_user": [(f"{names.get(uid, '?')} ({uid})", n) for uid, n in by_user],
        "limits": {
            "MAX_CONNS_PER_IP (per process)": settings.MAX_CONNS_PER_IP,
            "MAX_TOTAL_CONNECTIONS (per process)": settings.MAX_TOTAL_CONNECTIONS,
            "REALTIME_MAX_STREAMS_PER_USER": settings.REALTIME_MAX_STREAMS_PER_USER,
        },
    }


def low_prekeys(*, below: int | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Active devices with fewer than `below` (E2EE_OTPK_CRITICAL by default) one-time prekeys,
    emptiest first, at most `limit` (OPS_LOW_PREKEYS_REPORT_LIMIT by default): seed 001's query
    (e2ee_devices JOIN e2ee_key_bundles, status 'active')."""
    below = settings.E2EE_OTPK_CRITICAL if below is None else below
    limit = settings.OPS_LOW_PREKEYS_REPORT_LIMIT if limit is None else limit
    rows = (
        Device.objects.filter(status=Device.Status.ACTIVE, bundle__prekeys_remaining__lt=below)
        .order_by("bundle__prekeys_remaining", "device_id")
        .values(
            "device_id",
            "user_id",
            "user__username",
            "device_name",
            "bundle__prekeys_remaining",
            "last_seen_at",
        )[:limit]
    )
    return [
        {
            "device_id": str(r["device_id"]),
            "user_id": r["user_id"],
            "username": r["user__username"],
            "device_name": r["device_name"],
            "prekeys_remaining": r["bundle__prekeys_remaining"],
            "last_seen_at": r["last_seen_at"],
        }
        for r in rows
    ]


def delivery(*, since: datetime, until: datetime | None = None) -> dict[str, Any]:
    """Stored vs delivered for what was sent in [since, until): direct messages and their
    per-device envelopes (queued, handed to a stream, acknowledged), group messages, and
    sender-key envelopes (acknowledged or not). `pending_overdue` counts the envelopes pending
    for longer than INTEGRITY_UNDELIVERED_AFTER_S (`overdue_after_s`), the `dm_undelivered_stale`
    check's threshold. Acknowledged direct deliveries are purged after DM_ACKED_RETENTION_HOURS,
    so windows older than that under-count them."""
    until = until or timezone.now()
    window = {"created_at__gte": since, "created_at__lt": until}
    overdue_after_s = settings.INTEGRITY_UNDELIVERED_AFTER_S
    dm = Delivery.objects.filter(**window).aggregate(
        envelopes=Count("id"),
        handed_over=Count("id", filter=Q(sent_at__isnull=False)),
        acknowledged=Count("id", filter=Q(delivered_at__isnull=False)),
        pending=Count("id", filter=Q(delivered_at__isnull=True)),
        pending_overdue=Count(
            "id",
            filter=Q(delivered_at__isnull=True, created_at__lt=until - timedelta(seconds=overdue_after_s)),
        ),
    )
    dm["overdue_after_s"] = overdue_after_s
    dm["messages"] = Message.objects.filter(**window).count()
    groups = GroupMessage.objects.filter(**window).aggregate(
        messages=Count("id", filter=Q(proto=PROTO_MESSAGE)),
        sender_key_distributions=Count("id", filter=Q(proto=PROTO_SENDER_KEY)),
    )
    groups |= SenderKeyEnvelope.objects.filter(**window).aggregate(
        sender_key_envelopes=Count("id"),
        sender_key_envelopes_acknowledged=Count("id", filter=Q(acked_at__isnull=False)),
    )
    return {"since": since, "until": until, "dm": dm, "groups": groups}
