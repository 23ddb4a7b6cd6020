"""The beat jobs added for issue 17: spent group invites, old audit rows, leftover ephemeral-room
keys, low prekey pools. Each is idempotent (a second run handles nothing) and batched."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from chatsite.accounts.models import SecurityEvent
from chatsite.accounts.tasks import security_events_purge
from chatsite.api.redis import get_redis
from chatsite.realtime import device_bus
from dm.models import Delivery, Device, KeyBundle, Message
from dm.services.messages import deliveries_purge
from dm.services.prekeys import prekey_reminders_send
from groups import rooms
from groups.models import Invite, InviteRedemption
from groups.tasks import invites_purge, rooms_sweep
from tests.dm.helpers import open_conversation, party, send
from tests.factories import UserFactory
from tests.groups.helpers import make_group

pytestmark = pytest.mark.django_db(transaction=True)


# --- groups-purge-invites ---------------------------------------------------------------------


@override_settings(GROUP_INVITE_CLEANUP_GRACE_HOURS=24)
def test_invites_expired_past_the_grace_go_with_their_redemptions_and_a_second_run_finds_none():
    alice, bob = party(), party()
    group = make_group(alice)
    now = timezone.now()
    old = Invite.objects.create(group=group, code="old", expires_at=now - timedelta(hours=25), uses=1)
    InviteRedemption.objects.create(invite=old, user=bob.user)
    recent = Invite.objects.create(group=group, code="recent", expires_at=now - timedelta(hours=2))
    valid = Invite.objects.create(group=group, code="valid", expires_at=now + timedelta(hours=2))

    assert invites_purge() == {"invites_deleted": 1, "redemptions_deleted": 1}
    assert set(Invite.objects.values_list("pk", flat=True)) == {recent.pk, valid.pk}
    assert invites_purge() == {"invites_deleted": 0, "redemptions_deleted": 0}


@override_settings(GROUP_INVITE_CLEANUP_GRACE_HOURS=24)
def test_used_up_invites_go_once_their_last_redemption_is_past_the_grace():
    alice, bob, carol = party(), party(), party()
    group = make_group(alice)
    later = timezone.now() + timedelta(days=2)
    spent = Invite.objects.create(group=group, code="spent", expires_at=later, max_uses=1, uses=1)
    InviteRedemption.objects.create(
        invite=spent, user=bob.user, redeemed_at=timezone.now() - timedelta(hours=30)
    )
    just_spent = Invite.objects.create(group=group, code="just", expires_at=later, max_uses=1, uses=1)
    InviteRedemption.objects.create(invite=just_spent, user=carol.user)
    open_ = Invite.objects.create(group=group, code="open", expires_at=later, max_uses=2, uses=1)

    assert invites_purge()["invites_deleted"] == 1
    assert set(Invite.objects.values_list("code", flat=True)) == {just_spent.code, open_.code}


def test_invites_purge_is_batched_and_a_run_is_bounded_by_its_batches():
    alice = party()
    group = make_group(alice)
    for i in range(5):
        Invite.objects.create(group=group, code=f"c{i}", expires_at=timezone.now() - timedelta(days=3))

    assert invites_purge(batch_size=2, max_batches=2)["invites_deleted"] == 4
    assert invites_purge(batch_size=2, max_batches=2)["invites_deleted"] == 1
    assert not Invite.objects.exists()


# --- accounts-purge-security-events ------------------------------------------------------------


@override_settings(SECURITY_EVENT_RETENTION_DAYS=30)
def test_security_events_past_retention_go_in_batches_and_a_second_run_finds_none():
    user = UserFactory()
    old = timezone.now() - timedelta(days=31)
    for _ in range(5):
        SecurityEvent.objects.create(kind=SecurityEvent.Kind.LOGIN_FAILED, user=user, created_at=old)
    kept = SecurityEvent.objects.create(
        kind=SecurityEvent.Kind.LOGIN_FAILED, user=user, created_at=timezone.now() - timedelta(days=29)
    )

    assert security_events_purge(batch_size=2) == 5
    assert list(SecurityEvent.objects.values_list("pk", flat=True)) == [kept.pk]
    assert security_events_purge(batch_size=2) == 0


@override_settings(SECURITY_EVENT_RETENTION_DAYS=30, JOB_TIME_BUDGET_S=0)
def test_a_spent_time_budget_starts_no_batch_and_the_next_run_carries_on():
    SecurityEvent.objects.create(
        kind=SecurityEvent.Kind.LOGIN_FAILED, created_at=timezone.now() - timedelta(days=40)
    )

    assert security_events_purge() == 0
    with override_settings(JOB_TIME_BUDGET_S=30):
        assert security_events_purge() == 1


# --- groups-sweep-rooms -----------------------------------------------------------------------


def _redis() -> redis.Redis:
    client = get_redis()
    assert client is not None, "these tests need REDIS_URL"
    return client


@override_settings(ROOM_IDLE_TTL_S=600)
def test_room_keys_without_a_ttl_get_the_idle_ttl_and_orphaned_member_hashes_go():
    r = _redis()
    r.hset(rooms.meta_key("a" * 16), mapping={"created_at": 1, "creator": 1})  # no TTL
    r.hset(rooms.members_key("a" * 16), "chan", 1)  # no TTL
    r.hset(rooms.members_key("b" * 16), "chan", 1)  # its room is gone
    r.hset(rooms.meta_key("c" * 16), mapping={"created_at": 1, "creator": 1})
    r.expire(rooms.meta_key("c" * 16), 50)  # a live room: untouched

    assert rooms_sweep() == 3

    assert 0 < r.ttl(rooms.meta_key("a" * 16)) <= 600
    assert 0 < r.ttl(rooms.members_key("a" * 16)) <= 600
    assert not r.exists(rooms.members_key("b" * 16))
    assert r.ttl(rooms.meta_key("c" * 16)) <= 50
    assert rooms_sweep() == 0


def test_a_healthy_room_leaves_nothing_for_the_sweep():
    r = _redis()
    r.hset(rooms.meta_key("d" * 16), mapping={"created_at": 1, "creator": 1})
    r.hset(rooms.members_key("d" * 16), "chan", 1)
    r.expire(rooms.meta_key("d" * 16), 100)
    r.expire(rooms.members_key("d" * 16), 100)

    assert rooms_sweep() == 0
    assert r.exists(rooms.meta_key("d" * 16)) and r.exists(rooms.members_key("d" * 16))


def _fill_with_other_keys(r: redis.Redis, n: int) -> None:
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        pipe.set(f"other:{i}", 1)
    pipe.execute()


@override_settings(ROOM_SWEEP_SCAN_COUNT=100, JOB_TIME_BUDGET_S=30)
def test_the_room_sweep_counts_every_key_it_walks_toward_its_max():
    r = _redis()
    _fill_with_other_keys(r, 5000)
    for i in range(50):
        r.hset(rooms.meta_key(f"{i:016x}"), mapping={"created_at": 1, "creator": 1})  # no TTL

    # One page of ~100 of 5050 keys: a few room keys at most, never all 50 (which counting only
    # the room:* keys toward the max would fix).
    assert rooms_sweep(max_keys=100) < 50
    assert sum(r.ttl(rooms.meta_key(f"{i:016x}")) == -1 for i in range(50)) > 0


@override_settings(ROOM_SWEEP_SCAN_COUNT=100, JOB_TIME_BUDGET_S=0)
def test_the_room_sweep_stops_after_one_page_once_its_budget_is_spent():
    r = _redis()
    _fill_with_other_keys(r, 5000)
    for i in range(50):
        r.hset(rooms.meta_key(f"{i:016x}"), mapping={"created_at": 1, "creator": 1})

    assert rooms_sweep() < 50
    with override_settings(JOB_TIME_BUDGET_S=30):
        assert rooms_sweep() > 0  # the rest, on a run with time left


# --- dm-remind-low-prekeys --------------------------------------------------------------------


def _listen_events(device_id):
    pubsub = redis.Redis.from_url(settings.REDIS_URL).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(device_bus.channel(device_id))
    return pubsub


def _receive_event(pubsub, timeout: float = 5.0) -> dict | None:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        message = pubsub.get_message(timeout=left)
        if message is not None:
            return json.loads(message["data"])
    return None


@override_settings(E2EE_PREKEY_REMINDER_BELOW=5, E2EE_PREKEY_REMINDER_INTERVAL_S=3600)
def test_a_device_with_a_low_pool_gets_keys_low_once_per_interval():
    low, full = party(one_time_keys=3), party(one_time_keys=5)
    events = _listen_events(low.device_id)
    others = _listen_events(full.device_id)

    assert prekey_reminders_send() == 1
    message = _receive_event(events)
    assert message is not None and message["frame"] == {
        "type": "keys.low",
        "device_id": low.device_id,
        "prekeys_remaining": 3,
    }
    assert _receive_event(others, timeout=0.3) is None

    assert prekey_reminders_send() == 0
    assert _receive_event(events, timeout=0.3) is None


@override_settings(E2EE_PREKEY_REMINDER_BELOW=5)
def test_revoked_devices_are_not_reminded_and_a_run_is_bounded():
    revoked = party(one_time_keys=0)
    Device.objects.filter(pk=revoked.device_id).update(status="revoked", revoked_at=timezone.now())
    party(one_time_keys=1), party(one_time_keys=2)
    assert KeyBundle.objects.filter(prekeys_remaining__lt=5).count() == 3

    assert prekey_reminders_send(limit=1) == 1
    assert prekey_reminders_send(limit=2) == 1
    assert prekey_reminders_send(limit=2) == 0


@override_settings(E2EE_PREKEY_REMINDER_BELOW=5, E2EE_PREKEY_REMINDER_BATCH_SIZE=1)
def test_already_reminded_devices_count_toward_the_prekey_reminder_bound():
    party(one_time_keys=1), party(one_time_keys=2)
    assert prekey_reminders_send(limit=1) == 1  # the lowest pool

    # The one device examined is the one already reminded: it uses up the bound.
    assert prekey_reminders_send(limit=1) == 0
    assert prekey_reminders_send(limit=2) == 1


@override_settings(E2EE_PREKEY_REMINDER_BELOW=5, JOB_TIME_BUDGET_S=0)
def test_prekey_reminders_stop_when_the_time_budget_is_spent():
    party(one_time_keys=1), party(one_time_keys=2)

    assert prekey_reminders_send() == 0
    with override_settings(JOB_TIME_BUDGET_S=30):
        assert prekey_reminders_send() == 2


# --- dm-purge-deliveries (batched since issue 17) ----------------------------------------------


@override_settings(DM_ACKED_RETENTION_HOURS=1, DM_PURGE_BATCH_SIZE=1, DM_PURGE_MAX_BATCHES=1)
def test_dm_purge_is_batched_and_the_next_run_carries_on():
    alice, bob = party(), party()
    conv = open_conversation(alice, bob)
    ids = [send(alice, conv, [bob.device_id]).json()["message_id"] for _ in range(2)]
    old = timezone.now() - timedelta(hours=3)
    Delivery.objects.filter(message_id__in=ids).update(created_at=old, delivered_at=old)
    Message.objects.filter(pk__in=ids).update(created_at=old)

    assert deliveries_purge() == {"acked_purged": 1, "unacked_expired": 0, "messages_deleted": 1}
    assert deliveries_purge() == {"acked_purged": 1, "unacked_expired": 0, "messages_deleted": 1}
    assert deliveries_purge() == {"acked_purged": 0, "unacked_expired": 0, "messages_deleted": 0}
    assert not Message.objects.exists()
