"""Writes: one short transaction per use case (docs/presence.md).

The stream path calls these on connect, disconnect, and — only when Redis is down — on a
heartbeat; a steady heartbeat with Redis up writes nothing here (presence/liveness.py).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chatsite.realtime.relay import publish_to_user
from presence import liveness
from presence.metrics import PRESENCE_FLUSHES, PRESENCE_TRANSITIONS
from presence.models import AUDIENCES, UserPresence
from presence.selectors import audience_frames

logger = logging.getLogger(__name__)
REDIS_ERRORS = (redis.RedisError, OSError)


def mark_online(*, user_id: int) -> bool:
    """A stream opened: device_online and last_seen_at set; True on an offline -> online change."""
    now = timezone.now()
    with transaction.atomic():
        UserPresence.objects.get_or_create(user_id=user_id)
        changed = UserPresence.objects.filter(user_id=user_id, device_online=False).update(
            device_online=True, last_seen_at=now
        )
    PRESENCE_FLUSHES.labels(cause="connect").inc()
    return bool(changed)


def mark_offline(*, user_id: int) -> bool:
    """The user's last stream ended (or the sweep found it dead): device_online cleared and
    last_seen_at flushed; True when it was online."""
    with transaction.atomic():
        changed = UserPresence.objects.filter(user_id=user_id).update(
            device_online=False, last_seen_at=timezone.now()
        )
    PRESENCE_FLUSHES.labels(cause="disconnect").inc()
    return bool(changed)


def touch_last_seen(*, user_id: int) -> None:
    """Redis down: the heartbeat itself is recorded in the database (degraded mode)."""
    UserPresence.objects.filter(user_id=user_id).update(device_online=True, last_seen_at=timezone.now())
    PRESENCE_FLUSHES.labels(cause="degraded").inc()


def flush_last_seen() -> int:
    """Write the heartbeats Redis collected to user_presence.last_seen_at: one UPDATE for the
    batch, at most once per PRESENCE_FLUSH_INTERVAL_S (a call within it writes nothing)."""
    seen = liveness.take_seen()
    if not seen:
        return 0
    tz = timezone.get_current_timezone()
    rows = [
        UserPresence(user_id=uid, last_seen_at=datetime.fromtimestamp(ts, tz)) for uid, ts in seen.items()
    ]
    existing = set(UserPresence.objects.filter(user_id__in=seen).values_list("user_id", flat=True))
    rows = [r for r in rows if r.user_id in existing]
    with transaction.atomic():
        UserPresence.objects.bulk_update(rows, ["last_seen_at"], batch_size=1000)
    PRESENCE_FLUSHES.labels(cause="batch").inc(len(rows))
    return len(rows)


def sweep_stale(*, now: datetime | None = None) -> list[int]:
    """Clear device_online of every user with no live stream: with Redis, no unexpired stream key
    (2 heartbeats); without, a last_seen_at more than two heartbeats old. Returns those users."""
    now = now or timezone.now()
    online = list(UserPresence.objects.filter(device_online=True).values_list("user_id", "last_seen_at"))
    if not online:
        return []
    try:
        live = liveness.live_users([uid for uid, _ in online])
        stale = [uid for uid, _ in online if uid not in live]
    except REDIS_ERRORS:
        cutoff = now - timedelta(seconds=2 * settings.PRESENCE_HEARTBEAT_S)
        stale = [uid for uid, seen in online if seen is None or seen < cutoff]
    if stale:
        with transaction.atomic():
            UserPresence.objects.filter(user_id__in=stale, device_online=True).update(device_online=False)
        for uid in stale:
            announce(user_id=uid, online=False)
    return stale


def announce(*, user_id: int, online: bool) -> int:
    """Push `presence.changed` to the contacts allowed to see it, once per real transition (the
    last pushed state is kept in Redis; without Redis every call is a transition). Returns the
    number of recipients."""
    state = "online" if online else "offline"
    try:
        if not liveness.set_pushed(user_id, state):
            return 0
    except REDIS_ERRORS:
        pass
    frames = audience_frames(user_id, online=online)
    for recipient, frame in frames:
        publish_to_user(recipient, frame, source="presence")
    PRESENCE_TRANSITIONS.labels(state=state).inc()
    return len(frames)


def settle_offline(*, user_id: int) -> bool:
    """After the grace period: push offline if the user has not come back meanwhile."""
    try:
        if liveness.live_users([user_id]):
            return False
    except REDIS_ERRORS:
        if UserPresence.objects.filter(user_id=user_id, device_online=True).exists():
            return False
    return announce(user_id=user_id, online=False) > 0


def update_privacy(*, user_id: int, changes: dict) -> dict:
    """PATCH /status/presence/privacy: merge the given keys into privacy_settings."""
    with transaction.atomic():
        row, _ = UserPresence.objects.select_for_update().get_or_create(user_id=user_id)
        privacy = row.privacy()
        for key, value in changes.items():
            if key in ("share_last_seen", "share_online") and value not in AUDIENCES:
                raise ValueError(f"{key} must be one of {AUDIENCES}")
            privacy[key] = value
        row.privacy_settings = privacy
        row.save(update_fields=["privacy_settings", "updated_at"])
    return privacy
