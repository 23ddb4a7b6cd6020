"""Reads of group messages: a device's page after a cursor (fan-out on read), and the numbers of
GET /groups/metrics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, OuterRef, Q, Subquery
from django.utils import timezone

from groups.models import (
    PROTO_MESSAGE,
    PROTO_SENDER_KEY,
    Delivery,
    EpochChange,
    Group,
    GroupMessage,
    InviteRedemption,
    Participant,
    SenderKey,
    SenderKeyEnvelope,
)
from groups.presenters_messages import message_frame


@dataclass(frozen=True)
class MessagePage:
    frames: list[dict[str, Any]]
    cursor: int  # the last seq in the page (the `since` given, for an empty page)
    has_more: bool


def group_messages_page(
    *, group_id: Any, device_id: Any, joined_seq: int, since: int, limit: int
) -> MessagePage:
    """Messages of the group after `since` that the reading device may read: never before its
    user joined (`joined_seq`), never its own (as in a DM queue: the sender's other devices get
    them, the sending device has them already); proto 1 with their ciphertext; proto 11 only
    those carrying an envelope for this device, with that envelope. Two queries."""
    after = max(since, joined_seq)
    rows = list(
        GroupMessage.objects.filter(group_id=group_id, seq__gt=after)
        .exclude(sender_device_id=device_id)
        .filter(
            Q(proto=PROTO_MESSAGE) | Q(proto=PROTO_SENDER_KEY, sender_key__envelopes__device_id=device_id)
        )
        .order_by("seq")[: limit + 1]
    )
    has_more = len(rows) > limit
    rows = rows[:limit]
    distributions = [m.pk for m in rows if m.proto == PROTO_SENDER_KEY]
    envelopes = {}
    if distributions:
        envelopes = {
            e.sender_key.message_id: e
            for e in SenderKeyEnvelope.objects.filter(
                sender_key__message_id__in=distributions, device_id=device_id
            ).select_related("sender_key")
        }
    frames = [message_frame(m, envelopes.get(m.pk)) for m in rows]
    return MessagePage(frames, rows[-1].seq if rows else since, has_more)


def metrics_summary() -> dict[str, Any]:
    now = timezone.now()
    hour_ago = now - timedelta(hours=1)
    near_full = max(1, settings.GROUP_MAX_PARTICIPANTS * 95 // 100)
    return {
        "totals": {
            "groups": Group.objects.count(),
            "participants": Participant.objects.filter(is_banned=False).count(),
            "messages": GroupMessage.objects.filter(proto=PROTO_MESSAGE).count(),
            "sender_key_distributions": SenderKey.objects.count(),
        },
        "groups_near_capacity": Group.objects.filter(member_count__gte=near_full).count(),
        "near_capacity_threshold": near_full,
        "epoch_bumps_last_hour": EpochChange.objects.filter(created_at__gte=hour_ago)
        .values("group_id", "group_epoch")
        .distinct()
        .count(),
        "epoch_churn_last_hour": epoch_churn(hour_ago),
        "invite_redemptions_last_hour": InviteRedemption.objects.filter(redeemed_at__gte=hour_ago).count(),
        "unacked_envelopes_older_than_5m": unacked_envelopes_older_than(now - timedelta(minutes=5)),
    }


def unacked_envelopes_older_than(moment) -> int:
    # group_skenv_unacked_idx: a partial index on created_at of the unacknowledged envelopes.
    return SenderKeyEnvelope.objects.filter(acked_at__isnull=True, created_at__lt=moment).count()


def stream_positions(*, user_id: int, device_id: Any) -> list[tuple[str, int, int | None]]:
    """For a device's live stream: (group id, the user's joined_seq, the device's acknowledged
    seq or None) of every group the user is a current member of. One query
    (group_participants_user_idx, uq_group_delivery_group_device)."""
    acked = Delivery.objects.filter(group_id=OuterRef("group_id"), device_id=device_id).values("acked_seq")[
        :1
    ]
    return [
        (str(group_id), joined_seq, acked_seq)
        for group_id, joined_seq, acked_seq in Participant.objects.filter(user_id=user_id, is_banned=False)
        .annotate(acked_seq=Subquery(acked))
        .values_list("group_id", "joined_seq", "acked_seq")
    ]


def epoch_churn(since, limit: int = 10) -> list[dict[str, Any]]:
    """The groups whose epoch moved most since `since` (the runbook alerts above 10 an hour),
    most first: [{group_id, bumps}]. One query on group_epoch_changes_idx."""
    rows = (
        EpochChange.objects.filter(created_at__gte=since)
        .values("group_id")
        .annotate(bumps=Count("group_epoch", distinct=True))
        .order_by("-bumps", "group_id")[:limit]
    )
    return [{"group_id": str(r["group_id"]), "bumps": r["bumps"]} for r in rows]
