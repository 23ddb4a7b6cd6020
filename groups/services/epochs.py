"""`increment_group_epoch`: the one way a group's epoch moves (the runbook's name).

Every membership change (join, leave, remove, ban) and every change of a member's devices (added,
revoked) calls it in the transaction that makes the change. The UPDATE takes the group's row
lock, which a message send takes too (groups.services.messages), so a send sees either the old
membership with the old epoch or the new one with the new epoch, never a mix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from chatsite.realtime import relay
from groups.models import EpochChange
from groups.selectors.members import member_devices, user_device_ids

FEED = "groups"


@dataclass(frozen=True)
class Change:
    kind: str  # an EpochChange.Kind value
    user_id: int
    device_id: Any = None


def increment_group_epoch(*, group_id: Any, changes: list[Change]) -> int:
    """Move the group's epoch on by one inside the caller's transaction, record why, and after
    commit send `group.epoch` to every member device (and to the devices of users removed by this
    change, so they learn it). Returns the new epoch."""
    if not connection.in_atomic_block:
        raise RuntimeError("increment_group_epoch must run inside the transaction that changes the group")
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE groups SET group_epoch = group_epoch + 1, updated_at = %s "
            "WHERE id = %s RETURNING group_epoch",
            [now, group_id],
        )
        row = cursor.fetchone()
    if row is None:
        raise RuntimeError(f"group {group_id} does not exist")
    epoch = int(row[0])
    EpochChange.objects.bulk_create(
        [
            EpochChange(
                group_id=group_id,
                group_epoch=epoch,
                kind=c.kind,
                user_id=c.user_id,
                device_id=c.device_id,
                created_at=now,
            )
            for c in changes
        ]
    )
    frame = {"type": "group.epoch", "group_id": str(group_id), "group_epoch": epoch}
    devices = {device_id for _, device_id in member_devices(group_id)}
    for change in changes:
        if change.kind == EpochChange.Kind.MEMBER_REMOVED:
            devices.update(user_device_ids(change.user_id))
    relay.publish_to_devices([(d, frame) for d in sorted(devices, key=str)], source=FEED)
    transaction.on_commit(_count_bump)
    return epoch


def _count_bump() -> None:
    from groups.metrics import GROUP_EPOCH_BUMPS

    GROUP_EPOCH_BUMPS.inc()
