"""Reads for conversations, device queues, delivery tracing and the operators' DM metrics."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, Max, Min, Q, QuerySet
from django.utils import timezone

from dm.models import Conversation, Delivery, Device, Message


def conversations_for_user(*, user_id: int) -> QuerySet[Conversation]:
    return (
        Conversation.objects.filter(Q(user_low_id=user_id) | Q(user_high_id=user_id))
        .select_related("user_low", "user_high")
        .annotate(last_message_at=Max("messages__created_at"))
        .order_by("-last_message_at", "-id")
    )


def queued_after(*, device_id, cursor: int, limit: int) -> list[Delivery]:
    """The device's queue after `cursor`, in order (the replay and fetch path)."""
    return list(
        Delivery.objects.filter(device_id=device_id, seq__gt=cursor)
        .select_related("message")
        .order_by("seq")[:limit]
    )


def message_trace(*, message_id: int) -> dict[str, Any] | None:
    """Which devices have the message queued, handed over or acknowledged, and when.

    Metadata only: no ciphertext leaves this function.
    """
    message = Message.objects.filter(pk=message_id).first()
    if message is None:
        return None
    rows = (
        Delivery.objects.filter(message_id=message_id)
        .select_related("device")
        .order_by("device__user_id", "device_id")
        .values(
            "device_id",
            "device__device_name",
            "device__status",
            "recipient_user_id",
            "seq",
            "created_at",
            "sent_at",
            "delivered_at",
        )
    )
    devices = []
    for row in rows:
        state = "acknowledged" if row["delivered_at"] else "handed_over" if row["sent_at"] else "queued"
        devices.append(
            {
                "device_id": str(row["device_id"]),
                "device_name": row["device__device_name"],
                "device_status": row["device__status"],
                "user_id": row["recipient_user_id"],
                "cursor": row["seq"],
                "state": state,
                "queued_at": row["created_at"],
                "sent_at": row["sent_at"],
                "acknowledged_at": row["delivered_at"],
            }
        )
    conversation = Conversation.objects.filter(pk=message.conversation_id).first()
    members = [conversation.user_low_id, conversation.user_high_id] if conversation else []
    traced = {d["device_id"] for d in devices}
    # Devices of the conversation revoked since the message was sent: revocation deletes their
    # queued deliveries, so they have no row above and this is why.
    revoked = [
        {"device_id": str(pk), "user_id": user_id, "revoked_at": revoked_at}
        for pk, user_id, revoked_at in Device.objects.filter(
            user_id__in=members, status=Device.Status.REVOKED, revoked_at__gte=message.created_at
        )
        .order_by("revoked_at")
        .values_list("pk", "user_id", "revoked_at")
        if str(pk) not in traced
    ]
    return {
        "message_id": message.pk,
        "conversation_id": message.conversation_id,
        "sender_user_id": message.sender_user_id,
        "sender_device_id": str(message.sender_device_id) if message.sender_device_id else None,
        "created_at": message.created_at,
        "devices": devices,
        "revoked_devices": revoked,
    }


def device_queue_stats(*, limit: int = 20) -> list[dict[str, Any]]:
    """The deepest unacknowledged queues, with the age of their oldest message."""
    now = timezone.now()
    rows = (
        Delivery.objects.filter(delivered_at__isnull=True)
        .values("device_id")
        .annotate(depth=Count("id"), oldest=Min("created_at"))
        .order_by("-depth")[:limit]
    )
    return [
        {
            "device_id": str(r["device_id"]),
            "depth": r["depth"],
            "oldest_unacked_age_seconds": (now - r["oldest"]).total_seconds(),
        }
        for r in rows
    ]


def message_stats() -> dict[str, Any]:
    now = timezone.now()
    agg = Message.objects.aggregate(
        last_minute=Count("id", filter=Q(created_at__gte=now - timedelta(minutes=1))),
        last_hour=Count("id", filter=Q(created_at__gte=now - timedelta(hours=1))),
        last_day=Count("id", filter=Q(created_at__gte=now - timedelta(days=1))),
    )
    top = (
        Message.objects.filter(created_at__gte=now - timedelta(hours=1))
        .values("sender_user_id")
        .annotate(msg_count=Count("id"))
        .order_by("-msg_count")[:10]
    )
    return {**agg, "top_senders_last_hour": list(top)}


def undelivered_count() -> int:
    return Delivery.objects.filter(delivered_at__isnull=True).count()


def delivery_latency(*, window: timedelta = timedelta(hours=1)) -> dict[str, float | None]:
    """p95 / p99 seconds from queueing to acknowledgement over the window."""
    since = timezone.now() - window
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute(
                """
                WITH lat AS (
                    SELECT extract(epoch FROM delivered_at - created_at) AS s
                    FROM dm_delivery WHERE delivered_at IS NOT NULL AND delivered_at >= %s
                )
                SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY s),
                       percentile_cont(0.99) WITHIN GROUP (ORDER BY s), count(*)
                FROM lat
                """,
                [since],
            )
            p95, p99, n = cur.fetchone()
        return {
            "p95_seconds": float(p95) if p95 is not None else None,
            "p99_seconds": float(p99) if p99 is not None else None,
            "samples": n,
        }
    values = sorted(
        (d - c).total_seconds()
        for c, d in Delivery.objects.filter(delivered_at__gte=since).values_list("created_at", "delivered_at")
    )

    def pct(p: float) -> float | None:
        return values[min(len(values) - 1, int(p * len(values)))] if values else None

    return {"p95_seconds": pct(0.95), "p99_seconds": pct(0.99), "samples": len(values)}
