"""Celery beat tasks of presence (entries "presence-sweep" and "presence-flush" in chatsite/settings.py
CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task

from presence import services


@shared_task(name="presence.tasks.sweep_presence")
def sweep_presence() -> int:
    """Clear device_online of users whose liveness lapsed (a crashed process ran no cleanup)."""
    return len(services.sweep_stale())


@shared_task(name="presence.tasks.flush_last_seen")
def flush_last_seen() -> int:
    """Write the collected heartbeats to user_presence.last_seen_at in one batch."""
    try:
        return services.flush_last_seen()
    except services.REDIS_ERRORS:
        return 0  # degraded mode writes last_seen_at on each heartbeat itself
