"""Celery tasks of groups: retention of group messages and expired invites (beat entry
"groups-purge-messages" in chatsite/settings.py CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from groups.models import Delivery, GroupMessage, Invite

logger = logging.getLogger(__name__)

# How long past its expiry an invite is kept (a join attempt with it is still told "expired").
INVITE_GRACE = timedelta(days=1)


def group_messages_purge(
    *, now: datetime | None = None, batch_size: int | None = None, max_batches: int | None = None
) -> dict[str, int]:
    """Delete group messages older than GROUP_MESSAGE_RETENTION_DAYS, batch by batch, and group
    invites that expired more than a day ago.

    Batched and bounded: each batch is its own short transaction over at most
    GROUP_PURGE_BATCH_SIZE messages, oldest first (created_at, id); at most GROUP_PURGE_MAX_BATCHES
    batches a run, the rest is left to the next run. No lock is held between batches, so sends and
    acknowledgements wait at most for one batch. Idempotent: a second run finds nothing to delete.

    Positions (group_delivery). A device's acknowledged position is a RESTRICT foreign key to the
    last message it acknowledged, so a message some position points at cannot be deleted. Before
    a batch is deleted, the positions pointing into it are deleted. That loses nothing: a device
    whose acknowledged position is older than retention has acknowledged everything older than
    it, and all of that is deleted with it (batches go oldest first, and within a group `seq` and
    `created_at` grow together: a message is numbered and stamped under the group's row lock).
    Every message that remains is newer than the device's old position, so the device, now
    without a position, reads again from its join point (`joined_seq`; the WebSocket stream starts
    at max(joined_seq, acked_seq)) and gets only messages it never acknowledged: no duplicates.

    Sender keys of deleted proto-11 distributions, and their per-device envelopes, go with their
    message (CASCADE). The batch's messages are locked (SELECT ... FOR UPDATE) before their
    positions are deleted, so an acknowledgement moving a position onto one of them cannot slip in
    between; one that does try fails on the foreign key and the client acknowledges again.

    Returns {"messages_deleted", "positions_dropped", "invites_deleted"}.
    """
    now = now or timezone.now()
    batch_size = batch_size or settings.GROUP_PURGE_BATCH_SIZE
    max_batches = max_batches or settings.GROUP_PURGE_MAX_BATCHES
    cutoff = now - timedelta(days=settings.GROUP_MESSAGE_RETENTION_DAYS)
    messages_deleted = positions_dropped = 0
    for _ in range(max_batches):
        with transaction.atomic():
            ids = list(
                GroupMessage.objects.filter(created_at__lt=cutoff)
                .order_by("created_at", "id")
                .select_for_update()
                .values_list("pk", flat=True)[:batch_size]
            )
            if not ids:
                break
            dropped, _ = Delivery.objects.filter(message_id__in=ids).delete()
            _total, by_model = GroupMessage.objects.filter(pk__in=ids).delete()
        positions_dropped += dropped
        messages_deleted += by_model.get(GroupMessage._meta.label, 0)
        if len(ids) < batch_size:
            break
    # Their redemptions cascade with them; the count is of the invites.
    _total, by_model = Invite.objects.filter(expires_at__lt=now - INVITE_GRACE).delete()
    invites_deleted = by_model.get(Invite._meta.label, 0)
    if messages_deleted or invites_deleted:
        logger.info(
            "group retention purge",
            extra={
                "messages_deleted": messages_deleted,
                "positions_dropped": positions_dropped,
                "invites_deleted": invites_deleted,
            },
        )
    return {
        "messages_deleted": messages_deleted,
        "positions_dropped": positions_dropped,
        "invites_deleted": invites_deleted,
    }


@shared_task(autoretry_for=(Exception,), retry_backoff=True, max_retries=3)
def purge_group_messages() -> dict[str, int]:
    """Retention: group messages past GROUP_MESSAGE_RETENTION_DAYS (and the positions pointing at
    them), and invites expired more than a day ago."""
    return group_messages_purge()
