"""Writes for conversations, messages and per-device delivery queues.

Store-then-publish: a send commits the message and one dm_delivery row per recipient device
(each with the next sequence number of that device's queue) and only then publishes to the
devices' live streams. The database is the truth; the relay is a fast path that may drop.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from chatsite.accounts.models import User
from chatsite.accounts.selectors import is_blocked
from chatsite.accounts.services import user_reference
from chatsite.api import throttling
from chatsite.api.errors import ApiError
from chatsite.api.flags import require_message_write
from chatsite.realtime import relay
from chatsite.time_budget import TimeBudget
from dm.metrics import DM_MESSAGES_SENT
from dm.models import Conversation, Delivery, Device, DeviceQueue, Message
from dm.presenters import message_frame
from dm.selectors.messages import queued_after

logger = logging.getLogger("chatsite.dm")


@dataclass(frozen=True)
class Envelope:
    device_id: str
    ciphertext: str
    message_type: int = 0


@dataclass(frozen=True)
class SendResult:
    message: Message
    duplicate: bool
    recipients: int
    # (device id, frame) for each delivery this call queued; empty for a duplicate.
    deliveries: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


# --- Conversations --------------------------------------------------------------------------


def conversation_open(*, user: User, other_user_id: int) -> tuple[Conversation, bool]:
    """The one conversation between two users, created on first use."""
    if other_user_id == user.pk:
        raise ApiError("BAD_REQUEST", "You cannot open a conversation with yourself.")
    low, high = sorted((user.pk, other_user_id))
    existing = Conversation.objects.filter(
        user_low_id=low,
        user_high_id=high,
        user_low__is_active=True,
        user_low__disabled=False,
        user_high__is_active=True,
        user_high__disabled=False,
    ).first()
    if existing is not None:
        return existing, False  # names nobody new: not charged to the look-up budget
    user_reference(owner=user, user_id=other_user_id)  # budgeted; 404 for disabled or unknown
    try:
        # uq_dm_conversations_pair decides a race between both users opening it at once.
        with transaction.atomic():
            return Conversation.objects.get_or_create(user_low_id=low, user_high_id=high)
    except IntegrityError:
        return Conversation.objects.get(user_low_id=low, user_high_id=high), False


# --- Sending --------------------------------------------------------------------------------


def _check_envelopes(*, sender_device: Device, recipient_id: int, envelopes: list[Envelope]) -> list[Device]:
    """The envelopes must address exactly the recipient's active devices and the sender's other
    active devices; otherwise 409 with what is missing, extra or revoked, so the client can fix
    its device list (fetch bundles for the missing ones) and retry."""
    wanted = list(
        Device.objects.filter(
            Q(user_id=recipient_id) | Q(user_id=sender_device.user_id), status=Device.Status.ACTIVE
        ).exclude(pk=sender_device.pk)
    )
    wanted_ids = {str(d.pk) for d in wanted}
    given_ids = [e.device_id for e in envelopes]
    missing = sorted(wanted_ids - set(given_ids))
    extra = sorted(set(given_ids) - wanted_ids)
    if not any(d.user_id == recipient_id for d in wanted):
        raise ApiError(
            "DEVICE_MISMATCH",
            "The recipient has no active devices.",
            missing_devices=[],
            extra_devices=extra,
            revoked_devices=[],
        )
    if missing or extra:
        revoked = sorted(
            str(pk)
            for pk in Device.objects.filter(
                pk__in=_valid_uuids(extra), status=Device.Status.REVOKED
            ).values_list("pk", flat=True)
        )
        raise ApiError(
            "DEVICE_MISMATCH",
            missing_devices=missing,
            extra_devices=[d for d in extra if d not in revoked],
            revoked_devices=revoked,
        )
    return wanted


def _valid_uuids(values: list[str]) -> list[str]:
    import uuid

    out = []
    for value in values:
        try:
            out.append(str(uuid.UUID(value)))
        except ValueError:
            continue
    return out


def _existing(sender_device_id, client_message_id: str) -> Message | None:
    return Message.objects.filter(
        sender_device_id=sender_device_id, client_message_id=client_message_id
    ).first()


@functools.lru_cache(maxsize=65536)
def _conversation_members(conversation_id: int) -> tuple[int, int] | None:
    """Who is in a conversation. Cached per process: the pair of a conversation never changes."""
    row = Conversation.objects.filter(pk=conversation_id).values_list("user_low_id", "user_high_id").first()
    return tuple(row) if row else None


def _recipient_of(conversation_id: int, sender_id: int) -> int:
    members = _conversation_members(conversation_id)
    if members is None or sender_id not in members:
        raise ApiError("NOT_FOUND", "No such conversation.")
    return members[1] if members[0] == sender_id else members[0]


def _check_shape(envelopes: list[Envelope]) -> None:
    for envelope in envelopes:
        if len(envelope.ciphertext) > settings.DM_MAX_MESSAGE_BYTES:
            raise ApiError(
                "PAYLOAD_TOO_LARGE", f"A ciphertext may be at most {settings.DM_MAX_MESSAGE_BYTES} bytes."
            )
    device_ids = [e.device_id for e in envelopes]
    if len(set(device_ids)) != len(device_ids):
        raise ApiError("BAD_REQUEST", "Each device may have only one envelope.")


def send_rate_windows(sender_id: int) -> list[throttling.Window]:
    return [
        throttling.Window("dm_send_min", sender_id, settings.DM_SEND_RATE_PER_MIN, 60),
        throttling.Window("dm_send_hour", sender_id, settings.DM_SEND_RATE_PER_HOUR, 3600),
    ]


@dataclass(frozen=True)
class SendRequest:
    """A validated send, before the rate limit and the database have had their say."""

    sender_id: int
    sender_device_id: str
    conversation_id: int
    recipient_id: int
    client_message_id: str
    envelopes: list[Envelope]


def send_prepare(
    *,
    sender_id: int,
    sender_device_id,
    conversation_id: int,
    client_message_id: str,
    envelopes: list[Envelope],
) -> SendRequest:
    """The checks that need no write: sizes, duplicate envelopes, membership (cached)."""
    _check_shape(envelopes)
    return SendRequest(
        sender_id=sender_id,
        sender_device_id=str(sender_device_id),
        conversation_id=conversation_id,
        recipient_id=_recipient_of(conversation_id, sender_id),
        client_message_id=client_message_id,
        envelopes=envelopes,
    )


def message_send(
    *,
    sender_id: int,
    sender_device_id,
    conversation_id: int,
    client_message_id: str,
    envelopes: list[Envelope],
) -> SendResult:
    """Send one message: the one path for `POST /dm/conversations/{id}/messages` and `dm.send`.

    Checks the shape and membership, takes the rate-limit decision, stores the message (one
    ciphertext per device, each delivery at the next position of its device's queue) and, after
    the commit, publishes one `dm.message` frame to each device's live stream (the relay picks
    the route: the stream itself when it is open in this process, else the channel layer).
    Idempotent on (sender device, client message id): a retry at any time returns the original,
    and is answered even when the rate limit would refuse a new message.
    """
    require_message_write()  # 503 MESSAGE_WRITE_DISABLED while operators pause writes (seed 004)
    request = send_prepare(
        sender_id=sender_id,
        sender_device_id=sender_device_id,
        conversation_id=conversation_id,
        client_message_id=client_message_id,
        envelopes=envelopes,
    )
    windows = send_rate_windows(sender_id)
    decision = throttling.hit_many(windows)
    if not decision.allowed:
        original = _existing(request.sender_device_id, client_message_id)
        if original is not None:
            return SendResult(original, True, original.deliveries.count())
        throttling.refuse(decision, windows)
    result = _store(request)
    if not result.duplicate:
        DM_MESSAGES_SENT.inc()
        relay.publish_to_devices(result.deliveries, source="dm")  # after the commit
    return result


def _store(request: SendRequest) -> SendResult:
    """The write itself, after the rate limit: one statement on PostgreSQL, else the ORM path."""
    result = _store_in_one_statement(request) if connection.vendor == "postgresql" else None
    if result is None:
        result = _store_checked(request)
    return result


# The common case in one round trip. Every rule of `_store_checked` is in it: the sender device is
# active and the sender's; the recipient has not blocked the sender; the envelopes address exactly
# the active devices of both users but the sending one; the (sender device, client message id)
# unique constraint makes it idempotent (ON CONFLICT DO NOTHING). The UPDATE of dm_device_queues
# row-locks each device's queue until commit, so sequence numbers commit in order per device.
# A device revoked concurrently has its queue row deleted by the revoke (under the same lock),
# so no delivery can be queued to it afterwards. When any rule fails, or the message already
# exists, the statement writes nothing and returns no row; the ORM path then says why precisely.
_SEND_SQL = """
WITH given AS (
    SELECT * FROM unnest(%(device_ids)s::uuid[], %(types)s::smallint[], %(ciphertexts)s::text[])
        AS g(device_id, message_type, ciphertext)
),
expected AS (
    SELECT device_id, user_id FROM e2ee_devices
    WHERE user_id IN (%(sender)s, %(recipient)s) AND status = 'active' AND device_id <> %(sender_device)s
),
valid AS (
    SELECT EXISTS (
               SELECT 1 FROM e2ee_devices
               WHERE device_id = %(sender_device)s AND user_id = %(sender)s AND status = 'active')
       AND NOT EXISTS (SELECT 1 FROM blocks WHERE blocker_id = %(recipient)s AND blocked_id = %(sender)s)
       AND EXISTS (SELECT 1 FROM expected WHERE user_id = %(recipient)s)
       AND (SELECT count(*) FROM expected) = (SELECT count(*) FROM given)
       AND NOT EXISTS (
               SELECT 1 FROM given LEFT JOIN expected USING (device_id) WHERE expected.device_id IS NULL)
       AS ok
),
message AS (
    INSERT INTO dm_messages (conversation_id, sender_user_id, sender_device_id, client_message_id, created_at)
    SELECT %(conversation)s, %(sender)s, %(sender_device)s, %(client_message_id)s, statement_timestamp()
    FROM valid WHERE valid.ok
    ON CONFLICT (sender_device_id, client_message_id) DO NOTHING
    RETURNING id, created_at
),
queue AS (
    UPDATE dm_device_queues q SET last_seq = q.last_seq + 1
    FROM message
    WHERE q.device_id IN (SELECT device_id FROM given)
    RETURNING q.device_id, q.last_seq
)
INSERT INTO dm_delivery (message_id, device_id, recipient_user_id, seq, message_type, ciphertext, created_at)
SELECT message.id, given.device_id, expected.user_id, queue.last_seq, given.message_type, given.ciphertext,
       message.created_at
FROM message
CROSS JOIN given
JOIN queue ON queue.device_id = given.device_id
JOIN expected ON expected.device_id = given.device_id
RETURNING message_id, device_id, seq, message_type, created_at
"""


def _execute_send(params: dict[str, Any]) -> list[tuple]:
    # Through Django's cursor, so query counts and execute_wrapper see the hottest statement. A
    # server-side prepared statement was measured against it (bench/send_statement.py, docs/
    # performance.md): about 3 % of a send's time, within the run-to-run spread, so not kept.
    with connection.cursor() as cursor:
        cursor.execute(_SEND_SQL, params)
        return cursor.fetchall()


def _store_in_one_statement(request: SendRequest) -> SendResult | None:
    params = {
        "device_ids": [e.device_id for e in request.envelopes],
        "types": [e.message_type for e in request.envelopes],
        "ciphertexts": [e.ciphertext for e in request.envelopes],
        "sender": request.sender_id,
        "recipient": request.recipient_id,
        "sender_device": request.sender_device_id,
        "conversation": request.conversation_id,
        "client_message_id": request.client_message_id,
    }
    # Outside a transaction the statement commits by itself (autocommit): one round trip. Inside
    # one (tests, callers composing writes) a savepoint keeps an IntegrityError from poisoning it.
    block = transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()
    try:
        with block:
            rows = _execute_send(params)
    except (IntegrityError, psycopg.IntegrityError):
        return None  # e.g. the conversation is gone: the checked path explains it
    if not rows:
        return None
    message = Message(
        pk=rows[0][0],
        conversation_id=request.conversation_id,
        sender_user_id=request.sender_id,
        sender_device_id=request.sender_device_id,
        client_message_id=request.client_message_id,
        created_at=rows[0][4],
    )
    ciphertext_of = {e.device_id: e.ciphertext for e in request.envelopes}
    deliveries = [
        (
            str(device_id),
            message_frame(
                Delivery(seq=seq, message_type=message_type, ciphertext=ciphertext_of[str(device_id)]),
                message,
            ),
        )
        for _message_id, device_id, seq, message_type, _created in sorted(rows, key=lambda r: str(r[1]))
    ]
    return SendResult(message, False, len(deliveries), deliveries)


def _store_checked(request: SendRequest) -> SendResult:
    """The reference path, rule by rule with precise errors (and the only one on SQLite)."""
    sender_device = Device.objects.filter(pk=request.sender_device_id, user_id=request.sender_id).first()
    if sender_device is None or sender_device.status != Device.Status.ACTIVE:
        raise ApiError("DEVICE_REVOKED")
    original = _existing(sender_device.pk, request.client_message_id)
    if original is not None:
        return SendResult(original, True, original.deliveries.count())
    if is_blocked(sender_id=request.sender_id, recipient_id=request.recipient_id):
        raise ApiError("BLOCKED")
    devices = _check_envelopes(
        sender_device=sender_device, recipient_id=request.recipient_id, envelopes=request.envelopes
    )
    owner_of = {str(d.pk): d.user_id for d in devices}
    envelopes = request.envelopes
    try:
        with transaction.atomic():
            message = Message.objects.create(
                conversation_id=request.conversation_id,
                sender_user_id=request.sender_id,
                sender_device=sender_device,
                client_message_id=request.client_message_id,
            )
            seqs = _take_sequence_numbers([e.device_id for e in envelopes])
            # Re-checked under the queue locks: a revoke that committed after the check above
            # (it locks the same queue rows) must not get a delivery queued to its device.
            still_active = set(
                str(pk)
                for pk in Device.objects.filter(pk__in=list(seqs), status=Device.Status.ACTIVE).values_list(
                    "pk", flat=True
                )
            )
            if len(seqs) != len(envelopes) or still_active != set(seqs):
                raise ApiError(
                    "DEVICE_MISMATCH",
                    missing_devices=[],
                    extra_devices=[],
                    revoked_devices=sorted({e.device_id for e in envelopes} - still_active),
                )
            deliveries = Delivery.objects.bulk_create(
                [
                    Delivery(
                        message=message,
                        device_id=e.device_id,
                        recipient_user_id=owner_of[e.device_id],
                        seq=seqs[e.device_id],
                        message_type=e.message_type,
                        ciphertext=e.ciphertext,
                        created_at=message.created_at,
                    )
                    for e in envelopes
                ]
            )
    except IntegrityError:
        # Two retries raced: uq_dm_messages_client_id let exactly one insert through.
        original = _existing(sender_device.pk, request.client_message_id)
        if original is None:
            raise
        return SendResult(original, True, original.deliveries.count())
    frames = [(str(d.device_id), message_frame(d, message)) for d in deliveries]
    return SendResult(message, False, len(deliveries), frames)


def _take_sequence_numbers(device_ids: list[str]) -> dict[str, int]:
    """Next queue position for each device. The FOR UPDATE row locks on dm_device_queues (taken
    in device order, so concurrent senders cannot deadlock) are held until commit: sequence
    numbers of one device therefore commit in order, and a cursor never skips a late commit."""
    queues = list(
        DeviceQueue.objects.select_for_update().filter(device_id__in=device_ids).order_by("device_id")
    )
    for queue in queues:
        queue.last_seq += 1
    DeviceQueue.objects.bulk_update(queues, ["last_seq"])
    return {str(q.device_id): q.last_seq for q in queues}


# --- Acknowledgements -----------------------------------------------------------------------


# The frame deliveries_ack publishes to the device's stream after its commit: a stream paused at
# DM_MAX_UNACKED_PER_STREAM resumes on it (an SSE client acknowledges over REST). Internal to dm's
# stream feed, never sent to a client.
ACK_POSITION_FRAME = "dm.ack_position"


def deliveries_ack(*, device: Device, up_to: int | None = None, message_ids: list[int] | None = None) -> dict:
    """The device confirms receipt; dm_delivery.delivered_at records when. An `up_to` that moves
    the acknowledged position is published to the device's live stream after the commit."""
    now = timezone.now()
    with transaction.atomic():
        pending = Delivery.objects.filter(device=device, delivered_at__isnull=True)
        if up_to is not None:
            queue = DeviceQueue.objects.select_for_update().get(device=device)
            up_to = min(up_to, queue.last_seq)
            # sent_at keeps the hand-over time it already has (an ack by up_to used to overwrite it).
            count = pending.filter(seq__lte=up_to).update(delivered_at=now, sent_at=Coalesce("sent_at", now))
            if up_to > queue.acked_seq:
                queue.acked_seq = up_to
                queue.save(update_fields=["acked_seq"])
                relay.publish_to_device(
                    device.pk, {"type": ACK_POSITION_FRAME, "acked_seq": up_to}, source="dm"
                )
        else:
            count = pending.filter(message_id__in=message_ids or []).update(
                delivered_at=now, sent_at=Coalesce("sent_at", now)
            )
        Device.objects.filter(pk=device.pk).update(last_seen_at=now)
    return {"acknowledged": count}


@dataclass(frozen=True)
class QueuePage:
    frames: list[dict[str, Any]]
    cursor: int  # the last position in the page (the `after` given, for an empty page)
    has_more: bool


def queue_page_read(*, device_id, after: int, limit: int) -> QueuePage:
    """The one read of a device queue, for the REST fetch, a stream's replay and `dm.sync`:
    the page after a cursor, in order, as frames; the page is recorded as handed over
    (`dm_delivery.sent_at`)."""
    page = queued_after(device_id=device_id, cursor=after, limit=limit)
    cursor = page[-1].seq if page else after
    if page:
        deliveries_mark_sent(device_id=device_id, up_to_seq=cursor)
    return QueuePage([message_frame(d, d.message) for d in page], cursor, len(page) == limit)


def deliveries_mark_sent(*, device_id, up_to_seq: int) -> int:
    """Record when queued messages were first handed to the device (stream or fetch)."""
    return Delivery.objects.filter(device_id=device_id, seq__lte=up_to_seq, sent_at__isnull=True).update(
        sent_at=timezone.now()
    )


# --- Retention (Celery beat) ----------------------------------------------------------------


def deliveries_purge(*, now=None) -> dict[str, int]:
    """Delete acknowledged deliveries past DM_ACKED_RETENTION_HOURS, unacknowledged ones past
    DM_UNACKED_RETENTION_DAYS, then messages left with no delivery.

    Batched and bounded (docs/operations.md "Beat jobs"): each batch is its own short transaction
    over at most DM_PURGE_BATCH_SIZE rows; at most DM_PURGE_MAX_BATCHES batches of each kind and
    JOB_TIME_BUDGET_S seconds a run, the rest is left to the next run. Each kind is walked once a
    run in primary-key order (keyset: each batch starts after the last id of the one before), so
    a run never re-reads the rows that did not match (there is no index on delivered_at).

    Why no lock is needed between the SELECT of a batch and its DELETE:
    - deliveries: Delivery has no reverse relation and no delete signal, so Django deletes them
      with one `DELETE ... WHERE <the filter> AND id IN (...)` (a "fast delete"): the filter IS
      re-checked by the DELETE, so an unacknowledged delivery acknowledged meanwhile is left alone
      (and an acknowledged one never changes again: deliveries_ack only sets a NULL delivered_at);
    - messages: Message has a reverse relation (deliveries), so Django's collector SELECTs the
      batch and then deletes by primary key, without re-checking "no delivery". That is safe
      because a message's deliveries are inserted only in the transaction that inserts the
      message (messages_send), never later: a committed message with no delivery never gets one.
      (Were that to change, this would need a lock: the collector's cascade deletes the batch's
      deliveries by message_id, so it would take a delivery inserted meanwhile with it.)
    Idempotent."""
    now = now or timezone.now()
    budget = TimeBudget()
    acked_before = now - timedelta(hours=settings.DM_ACKED_RETENTION_HOURS)
    acked = _purge_batches(Delivery.objects.filter(delivered_at__lt=acked_before), budget)
    expired = _purge_batches(
        Delivery.objects.filter(
            delivered_at__isnull=True, created_at__lt=now - timedelta(days=settings.DM_UNACKED_RETENTION_DAYS)
        ),
        budget,
    )
    orphans = _purge_batches(
        Message.objects.filter(created_at__lt=acked_before, deliveries__isnull=True), budget
    )
    if expired:
        logger.warning("expired unacknowledged deliveries", extra={"count": expired})
    return {"acked_purged": acked, "unacked_expired": expired, "messages_deleted": orphans}


def _purge_batches(queryset, budget: TimeBudget) -> int:
    """Delete the queryset's rows DM_PURGE_BATCH_SIZE at a time, each batch in its own transaction,
    in one pass by primary key (keyset pagination: pk > the last id of the previous batch)."""
    model = queryset.model
    deleted = 0
    last_id = None
    for _ in range(settings.DM_PURGE_MAX_BATCHES):
        if budget.spent():
            break
        page = queryset if last_id is None else queryset.filter(pk__gt=last_id)
        with transaction.atomic():
            ids = list(page.order_by("pk").values_list("pk", flat=True)[: settings.DM_PURGE_BATCH_SIZE])
            if not ids:
                break
            last_id = ids[-1]
            # See deliveries_purge for which DELETEs re-check the filter and why the others need not.
            deleted += queryset.filter(pk__in=ids).delete()[1].get(model._meta.label, 0)
        if len(ids) < settings.DM_PURGE_BATCH_SIZE:
            break
    return deleted
