"""Reads of group messages: a device's page after a cursor (fan-out on read), and the numbers of
GET /groups/metrics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from groups.models import (
    PROTO_MESSAGE,
    PROTO_SENDER_KEY,
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
    user joined (`joined_seq`); proto 1 with their ciphertext; proto 11 only those carrying an
    envelope for this device, with that envelope. Two queries."""
    after = max(since, joined_seq)
    rows = list(
        GroupMessage.objects.filter(group_id=group_id, seq__gt=after)
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
        "invite_redemptions_last_hour": InviteRedemption.objects.filter(redeemed_at__gte=hour_ago).count(),
        "unacked_envelopes_older_than_5m": unacked_envelopes_older_than(now - timedelta(minutes=5)),
    }


def unacked_envelopes_older_than(moment) -> int:
    # group_skenv_unacked_idx: a partial index on created_at of the unacknowledged envelopes.
    return SenderKeyEnvelope.objects.filter(acked_at__isnull=True, created_at__lt=moment).count()
