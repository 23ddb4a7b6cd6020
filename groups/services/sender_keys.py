"""Sender-key distribution: a device hands its sender key for the current epoch to every other
active device of every current member, one Olm envelope each.

Stored as one proto 11 `group_messages` row (empty ciphertext, so it takes a `seq` and is read
in order with the messages it unlocks), one `group_sender_keys` row, and one
`group_sender_key_envelopes` row per recipient device (the ledger `group.ack` fills in). After the
commit each recipient device's stream gets a `group.message` frame carrying only its envelope.

The checks run under the group's row lock (groups.services.messages.lock_group_for_send), which
membership and device changes take too: the device set checked is exactly the one of the epoch
the key is stored for.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Prefetch

from chatsite.api.errors import ApiError
from chatsite.realtime import relay
from dm.models import Device
from groups.models import PROTO_SENDER_KEY, GroupMessage, SenderKey, SenderKeyEnvelope
from groups.presenters_messages import message_frame
from groups.selectors.members import member_devices
from groups.services.messages import (
    FEED,
    SendResult,
    check_ciphertext,
    existing_message,
    group_id_value,
    lock_group_for_send,
    require_current_epoch,
    require_sending_member,
)

MAX_ENVELOPES = 1024  # GROUP_MAX_PARTICIPANTS x devices per user, with room


@dataclass(frozen=True)
class Envelope:
    device_id: str
    ciphertext: str
    message_type: int = 0


def parse_envelopes(raw: Any) -> list[Envelope]:
    if not isinstance(raw, list):
        raise ApiError(
            "VALIDATION_ERROR", errors={"envelopes": ["A list of {device_id, ciphertext} is required."]}
        )
    if len(raw) > MAX_ENVELOPES:
        raise ApiError("VALIDATION_ERROR", errors={"envelopes": [f"At most {MAX_ENVELOPES} envelopes."]})
    out = []
    for item in raw:
        if isinstance(item, Envelope):
            out.append(item)
            continue
        if not isinstance(item, dict):
            raise ApiError("VALIDATION_ERROR", errors={"envelopes": ["Each envelope must be an object."]})
        try:
            device_id = str(uuid.UUID(str(item.get("device_id"))))
        except ValueError:
            raise ApiError("VALIDATION_ERROR", errors={"envelopes": ["device_id must be a UUID."]}) from None
        message_type = item.get("message_type", item.get("type", 0))
        if type(message_type) is not int or message_type not in (0, 1):
            raise ApiError("VALIDATION_ERROR", errors={"envelopes": ["message_type must be 0 or 1."]})
        out.append(
            Envelope(device_id, check_ciphertext(item.get("ciphertext"), field="envelopes"), message_type)
        )
    ids = [e.device_id for e in out]
    if len(set(ids)) != len(ids):
        raise ApiError("BAD_REQUEST", "Each device may have only one envelope.")
    return out


def _check_device_set(*, group_id: Any, sender_device_id: Any, envelopes: list[Envelope]) -> dict[str, int]:
    """The envelopes address exactly the active devices of the current members but the sender's
    own; else 409 DEVICE_MISMATCH with what is missing, extra, or revoked. Returns device -> user."""
    wanted = {str(d): u for u, d in member_devices(group_id) if str(d) != str(sender_device_id)}
    given = {e.device_id for e in envelopes}
    missing = sorted(set(wanted) - given)
    extra = sorted(given - set(wanted))
    if missing or extra:
        revoked = sorted(
            str(pk)
            for pk in Device.objects.filter(pk__in=extra, status=Device.Status.REVOKED).values_list(
                "pk", flat=True
            )
        )
        raise ApiError(
            "DEVICE_MISMATCH",
            "Envelopes must address every active device of every current member but the sending one.",
            missing_devices=missing,
            extra_devices=[d for d in extra if d not in revoked],
            revoked_devices=revoked,
        )
    return wanted


def _counting_failures(service):
    """Count each refused distribution (an ApiError) in group_sender_key_distribution_failures_total."""

    @functools.wraps(service)
    def counted(**kwargs):
        try:
            return service(**kwargs)
        except ApiError as err:
            from groups.metrics import GROUP_SENDER_KEY_DISTRIBUTION_FAILURES

            GROUP_SENDER_KEY_DISTRIBUTION_FAILURES.labels(code=err.code).inc()
            raise

    return counted


@_counting_failures
def sender_key_distribute(
    *,
    group_id: Any,
    sender_user_id: int,
    sender_device_id: Any,
    group_epoch: int,
    sender_key_id: str,
    envelopes: list[Envelope] | list[dict],
    client_message_id: str | None = None,
) -> SendResult:
    """Store a sender key for the current epoch and its envelopes; publish each envelope to its
    device after the commit. Idempotent on (sender device, client message id) and on (group,
    sender device, epoch, sender key id): a repeat returns the original distribution."""
    envelopes = parse_envelopes(envelopes)
    client_message_id = client_message_id or f"sk:{uuid.uuid4().hex}"
    gid = group_id_value(group_id)
    original = existing_message(sender_device_id, client_message_id)
    if original is not None and original.group_id == gid:
        return SendResult(
            original, True, SenderKeyEnvelope.objects.filter(sender_key__message=original).count()
        )
    try:
        with transaction.atomic():
            locked = lock_group_for_send(gid)
            require_sending_member(group_id=gid, user_id=sender_user_id, device_id=sender_device_id)
            require_current_epoch(group_id=gid, locked=locked, group_epoch=group_epoch)
            same_key = SenderKey.objects.filter(
                group_id=gid,
                sender_device_id=sender_device_id,
                group_epoch=locked.group_epoch,
                sender_key_id=sender_key_id,
            ).first()
            if same_key is not None:
                raise _Repeat(same_key.message_id)
            owner_of = _check_device_set(group_id=gid, sender_device_id=sender_device_id, envelopes=envelopes)
            message = GroupMessage.objects.create(
                group_id=gid,
                seq=locked.seq,
                sender_user_id=sender_user_id,
                sender_device_id=sender_device_id,
                group_epoch=locked.group_epoch,
                proto=PROTO_SENDER_KEY,
                sender_key_id=sender_key_id,
                client_message_id=client_message_id,
                ciphertext="",
            )
            key = SenderKey.objects.create(
                group_id=gid,
                sender_user_id=sender_user_id,
                sender_device_id=sender_device_id,
                group_epoch=locked.group_epoch,
                sender_key_id=sender_key_id,
                message=message,
                rotated_at=message.created_at,
            )
            stored = SenderKeyEnvelope.objects.bulk_create(
                [
                    SenderKeyEnvelope(
                        sender_key=key,
                        device_id=e.device_id,
                        recipient_user_id=owner_of[e.device_id],
                        message_type=e.message_type,
                        ciphertext=e.ciphertext,
                        created_at=message.created_at,
                    )
                    for e in envelopes
                ]
            )
            relay.publish_to_devices(
                [(str(e.device_id), message_frame(message, e)) for e in stored], source=FEED
            )
    except _Repeat as repeat:
        original = GroupMessage.objects.get(pk=repeat.message_id)
        return SendResult(
            original, True, SenderKeyEnvelope.objects.filter(sender_key__message=original).count()
        )
    except IntegrityError:
        original = existing_message(sender_device_id, client_message_id)
        if original is None:
            raise
        if original.group_id != gid:
            raise ApiError("CONFLICT", "client_message_id was already used for another group.") from None
        return SendResult(
            original, True, SenderKeyEnvelope.objects.filter(sender_key__message=original).count()
        )
    transaction.on_commit(_count_distribution)
    return SendResult(message, False, len(stored))


class _Repeat(Exception):  # noqa: N818  (control flow out of the atomic block)
    def __init__(self, message_id: int):
        self.message_id = message_id


def _count_distribution() -> None:
    from groups.metrics import GROUP_SENDER_KEY_DISTRIBUTIONS

    GROUP_SENDER_KEY_DISTRIBUTIONS.inc()


def sender_keys_of_user(*, group_id: Any, user_id: int, limit: int = 50) -> list[SenderKey]:
    """The user's sender keys in the group, newest first, with their envelopes' ack ledger."""
    return list(
        SenderKey.objects.filter(group_id=group_id, sender_user_id=user_id)
        .order_by("-group_epoch", "-id")
        .prefetch_related(Prefetch("envelopes", queryset=SenderKeyEnvelope.objects.order_by("device_id")))[
            :limit
        ]
    )
