"""Celery tasks of groups: retention of group messages, spent invites and leftover room keys (beat
entries "groups-purge-messages", "groups-purge-invites" and "groups-sweep-rooms" in
chatsite/settings.py CELERY_BEAT_SCHEDULE; docs/operations.md "Beat jobs")."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from chatsite.api.redis import get_redis
from chatsite.time_budget import TimeBudget, cleanup_task
from groups.models import Delivery, GroupMessage, Invite, InviteRedemption

logger = logging.getLogger(__name__)


def group_messages_purge(
    *, now: datetime | None = None, batch_size: int | None = None, max_batches: int | None = None
) -> dict[str, int]:
    """Delete group messages older than GROUP_MESSAGE_RETENTION_DAYS, batch by batch.

    Batched and bounded: each batch is its own short transaction over at most
    GROUP_PURGE_BATCH_SIZE messages, oldest first (created_at, id); at most GROUP_PURGE_MAX_BATCHES
    batches and JOB_TIME_BUDGET_S seconds a run, the rest is left to the next run. No lock is held
    between batches, so sends and acknowledgements wait at most for one batch. Idempotent: a
    second run finds nothing to delete.

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

    Returns {"messages_deleted", "positions_dropped"}. (Invites: invites_purge.)
    """
    now = now or timezone.now()
    batch_size = batch_size or settings.GROUP_PURGE_BATCH_SIZE
    max_batches = max_batches or settings.GROUP_PURGE_MAX_BATCHES
    cutoff = now - timedelta(days=settings.GROUP_MESSAGE_RETENTION_DAYS)
    messages_deleted = positions_dropped = 0
    budget = TimeBudget()
    for _ in range(max_batches):
        if budget.spent():
            break
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
    if messages_deleted:
        logger.info(
            "group retention purge",
            extra={"messages_deleted": messages_deleted, "positions_dropped": positions_dropped},
        )
    return {"messages_deleted": messages_deleted, "positions_dropped": positions_dropped}


def invites_purge(
    *, now: datetime | None = None, batch_size: int | None = None, max_batches: int | None = None
) -> dict[str, int]:
    """Delete spent invites, with their redemptions (CASCADE), batch by batch: those expired more
    than GROUP_INVITE_CLEANUP_GRACE_HOURS ago, and those used up (uses = max_uses) whose last
    redemption is older than that. Within the grace a join attempt is still told why the invite
    no longer works (GONE / MAX_USES) instead of NOT_FOUND.

    Each batch is one short transaction over at most GROUP_PURGE_BATCH_SIZE invites, locked with
    SKIP LOCKED: a redemption holding an invite's row lock (group_join locks it to count the use)
    is never waited for, and its invite is left to the next run. Bounded by GROUP_PURGE_MAX_BATCHES
    and JOB_TIME_BUDGET_S. Idempotent. Expired ones are found through group_invites_expiry_idx;
    used-up ones are few (ck_group_invites_uses keeps uses <= max_uses).
    Returns {"invites_deleted", "redemptions_deleted"}."""
    now = now or timezone.now()
    batch_size = batch_size or settings.GROUP_PURGE_BATCH_SIZE
    max_batches = max_batches or settings.GROUP_PURGE_MAX_BATCHES
    cutoff = now - timedelta(hours=settings.GROUP_INVITE_CLEANUP_GRACE_HOURS)
    recently_redeemed = InviteRedemption.objects.filter(invite_id=OuterRef("pk"), redeemed_at__gte=cutoff)
    spent = Q(expires_at__lt=cutoff) | (
        Q(max_uses__isnull=False, uses__gte=F("max_uses")) & ~Exists(recently_redeemed)
    )
    invites = redemptions = 0
    budget = TimeBudget()
    for _ in range(max_batches):
        if budget.spent():
            break
        with transaction.atomic():
            ids = list(
                Invite.objects.filter(spent)
                .order_by("id")
                .select_for_update(skip_locked=True)
                .values_list("pk", flat=True)[:batch_size]
            )
            if not ids:
                break
            _total, by_model = Invite.objects.filter(pk__in=ids).delete()
        invites += by_model.get(Invite._meta.label, 0)
        redemptions += by_model.get(InviteRedemption._meta.label, 0)
        if len(ids) < batch_size:
            break
    if invites:
        logger.info("group invites purge", extra={"invites_deleted": invites})
    return {"invites_deleted": invites, "redemptions_deleted": redemptions}


# KEYS: the scanned key, its room's meta key (the same key for a meta key). ARGV: idle TTL.
# One script, so a room created or left meanwhile is seen whole (as the room scripts see it).
_ROOM_KEY_FIX_LUA = """
if KEYS[1] ~= KEYS[2] and redis.call('EXISTS', KEYS[2]) == 0 then
  return redis.call('DEL', KEYS[1])
end
if redis.call('TTL', KEYS[1]) == -1 then
  return redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return 0
"""


def rooms_sweep(*, max_keys: int | None = None) -> int:
    """Give every ephemeral-room key (groups/rooms.py: `room:<id>`, `room:<id>:members`) that has
    no TTL the room idle TTL, and delete a members hash whose room is gone. Returns the keys fixed.

    The room scripts never leave such a key: each one writes and sets both keys' TTLs in one Lua
    script (atomic in Redis), and the last leave deletes both. So on a healthy Redis this finds 0;
    it guards against keys written outside those scripts (a restore from an RDB dump taken by an
    older version, a manual HSET during an incident) that would otherwise live for ever.

    Bounded whatever the keyspace holds: an explicit SCAN loop (never KEYS), one page of at most
    ROOM_SWEEP_SCAN_COUNT keys at a time, and after every page (matching keys or not: SCAN's MATCH
    filters after walking, so a Redis full of other keys is walked just the same) it stops once
    ROOM_SWEEP_MAX_KEYS keys have been examined (each page counts its COUNT: the keys SCAN walked,
    not only those that matched) or JOB_TIME_BUDGET_S has passed. The next run starts a new SCAN.
    Idempotent. Without Redis (embedded mode) there are no rooms: 0."""
    client = get_redis()
    if client is None:
        return 0
    max_keys = max_keys or settings.ROOM_SWEEP_MAX_KEYS
    page = max(1, min(settings.ROOM_SWEEP_SCAN_COUNT, max_keys))
    budget = TimeBudget()
    fixed = examined = 0
    fix = client.register_script(_ROOM_KEY_FIX_LUA)
    cursor = 0
    while True:
        cursor, keys = client.scan(cursor=cursor, match="room:*", count=page)
        examined += page
        for raw in keys:
            key = raw.decode()
            meta = key.removesuffix(":members")
            fixed += int(fix(keys=[key, meta], args=[settings.ROOM_IDLE_TTL_S]))
        if int(cursor) == 0 or examined >= max_keys or budget.spent():
            break
    if fixed:
        logger.warning("room keys without a TTL fixed", extra={"keys": fixed})
    return fixed


@cleanup_task
def purge_group_messages() -> dict[str, int]:
    """Retention: group messages past GROUP_MESSAGE_RETENTION_DAYS (and the positions pointing at
    them)."""
    return group_messages_purge()


@cleanup_task
def purge_invites() -> dict[str, int]:
    """Invites expired or used up more than GROUP_INVITE_CLEANUP_GRACE_HOURS ago."""
    return invites_purge()


@shared_task(soft_time_limit=settings.JOB_SOFT_TIME_LIMIT_S)
def sweep_rooms() -> int:
    """Ephemeral-room keys left without a TTL."""
    return rooms_sweep()
