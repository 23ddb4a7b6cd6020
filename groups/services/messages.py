"""Group messages: send, acknowledge, and the rules both sends (messages and sender-key
distributions, groups.services.sender_keys) share.

Ordering: a send starts with `UPDATE groups SET last_seq = last_seq + 1 ... RETURNING`, which
takes the group's row lock until the transaction ends. Membership and device changes take the
same lock (groups.services.members, groups.services.epochs). So within a group:

- `seq` values commit in the order they were taken (the next sender waits for the lock), and a
  reader whose cursor is N never later sees a message with seq <= N commit: cursors never skip;
- a send sees one consistent (epoch, member devices) pair: the epoch check, the sender-key check
  and the device set the live frames go to are all read under the lock;
- a failed send rolls its UPDATE back, so `seq` has no gaps from refusals.

Store-then-publish: one `group_messages` row per message (fan-out on read); after the commit one
`group.message` frame per member device except the sender's goes to the live streams
(chatsite.realtime.relay). The database is the truth; a device that missed a frame reads
`GET /groups/{id}/messages?since=` or sends `group.sync`.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from chatsite.api import throttling
from chatsite.api.errors import ApiError
from chatsite.api.flags import require_message_write
from chatsite.realtime import relay
from dm.models import Device
from groups.models import (
    PROTO_MESSAGE,
    Delivery,
    EpochChange,
    GroupMessage,
    Participant,
    SenderKey,
    SenderKeyEnvelope,
)
from groups.presenters_messages import message_frame
from groups.selectors.members import member_devices

FEED = "groups"

_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")


@dataclass(frozen=True)
class Locked:
    """The group as the send's row lock left it: its epoch and the position this send takes."""

    group_epoch: int
    seq: int


@dataclass(frozen=True)
class SendResult:
    message: GroupMessage
    duplicate: bool
    recipients: int = 0


# --- Shared rules of both sends --------------------------------------------------------------


def lock_group_for_send(group_id: Any) -> Locked:
    """Take the group's row lock and the next position, inside the caller's transaction."""
    if not connection.in_atomic_block:
        raise RuntimeError("lock_group_for_send must run inside the send's transaction")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE groups SET last_seq = last_seq + 1 WHERE id = %s RETURNING group_epoch, last_seq",
            [group_id],
        )
        row = cursor.fetchone()
    if row is None:
        raise ApiError("NOT_FOUND", "No such group.")
    return Locked(group_epoch=int(row[0]), seq=int(row[1]))


def require_sending_member(*, group_id: Any, user_id: int, device_id: Any) -> None:
    """Under the lock: the sender is a current member and sends as one of its active devices."""
    member = Participant.objects.filter(group_id=group_id, user_id=user_id, is_banned=False).exists()
    if not member:
        raise ApiError("NOT_MEMBER")
    if not Device.objects.filter(pk=device_id, user_id=user_id, status=Device.Status.ACTIVE).exists():
        raise ApiError("DEVICE_REVOKED")


def epoch_changes_since(*, group_id: Any, group_epoch: int) -> dict[str, list]:
    """What changed in the group after `group_epoch` (group_epoch_changes), for EPOCH_STALE."""
    changes: dict[str, list] = {
        "members_added": [],
        "members_removed": [],
        "devices_added": [],
        "devices_removed": [],
    }
    key = {
        EpochChange.Kind.MEMBER_ADDED: "members_added",
        EpochChange.Kind.MEMBER_REMOVED: "members_removed",
        EpochChange.Kind.DEVICE_ADDED: "devices_added",
        EpochChange.Kind.DEVICE_REMOVED: "devices_removed",
    }
    rows = (
        EpochChange.objects.filter(group_id=group_id, group_epoch__gt=group_epoch)
        .order_by("group_epoch", "id")
        .values_list("group_epoch", "kind", "user_id", "device_id")
    )
    for epoch, kind, user_id, device_id in rows:
        entry: dict[str, Any] = {"group_epoch": epoch, "user_id": user_id}
        if kind in (EpochChange.Kind.DEVICE_ADDED, EpochChange.Kind.DEVICE_REMOVED):
            entry["device_id"] = str(device_id) if device_id else None
        changes[key[kind]].append(entry)
    return changes


def require_current_epoch(*, group_id: Any, locked: Locked, group_epoch: int) -> None:
    if group_epoch != locked.group_epoch:
        raise ApiError(
            "EPOCH_STALE",
            group_epoch=locked.group_epoch,
            changes=epoch_changes_since(group_id=group_id, group_epoch=min(group_epoch, locked.group_epoch)),
        )


def check_ciphertext(value: Any, *, field: str = "ciphertext", allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not allow_empty) or not _BASE64.match(value):
        raise ApiError("VALIDATION_ERROR", errors={field: ["Must be non-empty base64."]})
    if len(value) > settings.GROUP_MAX_MESSAGE_BYTES:
        raise ApiError(
            "PAYLOAD_TOO_LARGE", f"A ciphertext may be at most {settings.GROUP_MAX_MESSAGE_BYTES} bytes."
        )
    return value


def existing_message(sender_device_id: Any, client_message_id: str) -> GroupMessage | None:
    return GroupMessage.objects.filter(
        sender_device_id=sender_device_id, client_message_id=client_message_id
    ).first()


def send_rate_windows(user_id: int) -> list[throttling.Window]:
    return [throttling.Window("group_send_min", user_id, settings.GROUP_MESSAGE_RATE_PER_USER_PER_MIN, 60)]


# --- Sending ---------------------------------------------------------------------------------


def group_message_send(
    *,
    group_id: Any,
    sender_user_id: int,
    sender_device_id: Any,
    group_epoch: int,
    sender_key_id: str,
    client_message_id: str,
    ciphertext: str,
) -> SendResult:
    """Store one Megolm message (proto 1) and publish it to every member device but the sender's.

    The one path for `POST /groups/{id}/messages` and `group.send`. Idempotent on (sender device,
    client message id): a retry returns the original (answered even over the rate limit)."""
    require_message_write()  # 503 MESSAGE_WRITE_DISABLED while operators pause writes (seed 004)
    check_ciphertext(ciphertext)
    original = existing_message(sender_device_id, client_message_id)
    if original is not None and original.group_id == group_id_value(group_id):
        return SendResult(original, True)
    windows = send_rate_windows(sender_user_id)
    decision = throttling.hit_many(windows)
    if not decision.allowed:
        throttling.refuse(decision, windows)
    try:
        with transaction.atomic():
            locked = lock_group_for_send(group_id)
            require_sending_member(group_id=group_id, user_id=sender_user_id, device_id=sender_device_id)
            # A retry that waited for the lock behind its own first attempt finds it here.
            original = existing_message(sender_device_id, client_message_id)
            if original is not None:
                if original.group_id != group_id_value(group_id):
                    raise ApiError("CONFLICT", "client_message_id was already used for another group.")
                raise _Duplicate(original)
            require_current_epoch(group_id=group_id, locked=locked, group_epoch=group_epoch)
            has_key = SenderKey.objects.filter(
                group_id=group_id,
                sender_device_id=sender_device_id,
                group_epoch=locked.group_epoch,
                sender_key_id=sender_key_id,
            ).exists()
            if not has_key:
                raise ApiError(
                    "SENDER_KEY_REQUIRED",
                    f"Distribute sender key {sender_key_id!r} for epoch {locked.group_epoch} first.",
                    group_epoch=locked.group_epoch,
                )
            message = GroupMessage.objects.create(
                group_id=group_id,
                seq=locked.seq,
                sender_user_id=sender_user_id,
                sender_device_id=sender_device_id,
                group_epoch=locked.group_epoch,
                proto=PROTO_MESSAGE,
                sender_key_id=sender_key_id,
                client_message_id=client_message_id,
                ciphertext=ciphertext,
            )
            frame = message_frame(message)
            recipients = [
                (device_id, frame)
                for _user_id, device_id in member_devices(group_id)
                if str(device_id) != str(sender_device_id)
            ]
            relay.publish_to_devices(recipients, source=FEED)  # after the commit
    except _Duplicate as dup:
        return SendResult(dup.message, True)
    except IntegrityError:
        # uq_group_messages_client_id: the same client message id in another group, or a race.
        original = existing_message(sender_device_id, client_message_id)
        if original is None:
            raise
        if original.group_id != group_id_value(group_id):
            raise ApiError("CONFLICT", "client_message_id was already used for another group.") from None
        return SendResult(original, True)
    transaction.on_commit(_count_sent)
    return SendResult(message, False, len(recipients))


class _Duplicate(Exception):  # noqa: N818  (control flow out of the atomic block)
    def __init__(self, message: GroupMessage):
        self.message = message


def group_id_value(group_id: Any) -> uuid.UUID:
    return group_id if isinstance(group_id, uuid.UUID) else uuid.UUID(str(group_id))


def _count_sent() -> None:
    from groups.metrics import GROUP_MESSAGES_SENT

    GROUP_MESSAGES_SENT.inc()


# --- Acknowledgements ------------------------------------------------------------------------


def group_ack(*, group_id: Any, device_id: Any, up_to_seq: int) -> dict[str, Any]:
    """The device has everything of the group up to `up_to_seq`: its `group_delivery` row moves
    there (never backwards), and the sender-key envelopes it received up to there are marked
    acknowledged. Returns the device's position."""
    now = timezone.now()
    with transaction.atomic():
        target = (
            GroupMessage.objects.filter(group_id=group_id, seq__lte=up_to_seq)
            .order_by("-seq")
            .values_list("pk", "seq")
            .first()
        )
        if target is not None:
            with connection.cursor() as cursor:
                # Monotonic upsert: a late, lower ack leaves the row as it is.
                cursor.execute(
                    "INSERT INTO group_delivery (group_id, device_id, message_id, acked_seq, delivered_at) "
                    "VALUES (%s, %s, %s, %s, %s) "
                    "ON CONFLICT (group_id, device_id) DO UPDATE SET message_id = EXCLUDED.message_id, "
                    "acked_seq = EXCLUDED.acked_seq, delivered_at = EXCLUDED.delivered_at "
                    "WHERE group_delivery.acked_seq < EXCLUDED.acked_seq",
                    [str(group_id), str(device_id), target[0], target[1], now],
                )
            envelopes = SenderKeyEnvelope.objects.filter(
                device_id=device_id,
                acked_at__isnull=True,
                sender_key__group_id=group_id,
                sender_key__message__seq__lte=up_to_seq,
            ).update(acked_at=now)
        else:
            envelopes = 0
        acked = Delivery.objects.filter(group_id=group_id, device_id=device_id).values_list(
            "acked_seq", flat=True
        )
        position = next(iter(acked), 0)
    return {"group_id": str(group_id), "acked_seq": position, "envelopes_acked": envelopes}
