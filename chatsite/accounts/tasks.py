"""Celery tasks of accounts (beat entry "accounts-purge-security-events" in chatsite/settings.py
CELERY_BEAT_SCHEDULE; docs/operations.md "Beat jobs")."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chatsite.accounts.models import SecurityEvent
from chatsite.time_budget import TimeBudget, cleanup_task

logger = logging.getLogger(__name__)


def security_events_purge(*, now: datetime | None = None, batch_size: int | None = None) -> int:
    """Delete audit rows (security_events) older than SECURITY_EVENT_RETENTION_DAYS, oldest first,
    SECURITY_EVENT_PURGE_BATCH_SIZE rows per transaction (found through the created_at index),
    until none is left or JOB_TIME_BUDGET_S has passed; the next run carries on. The table is
    append-only, so a row past the cutoff is never written again and no lock is needed between
    batches. Idempotent. Returns the rows deleted."""
    now = now or timezone.now()
    batch_size = batch_size or settings.SECURITY_EVENT_PURGE_BATCH_SIZE
    cutoff = now - timedelta(days=settings.SECURITY_EVENT_RETENTION_DAYS)
    budget = TimeBudget()
    deleted = 0
    while not budget.spent():
        with transaction.atomic():
            ids = list(
                SecurityEvent.objects.filter(created_at__lt=cutoff)
                .order_by("created_at", "id")
                .values_list("pk", flat=True)[:batch_size]
            )
            if not ids:
                break
            deleted += SecurityEvent.objects.filter(pk__in=ids).delete()[0]
        if len(ids) < batch_size:
            break
    if deleted:
        logger.info("security events purged", extra={"rows": deleted, "cutoff": cutoff.isoformat()})
    return deleted


@cleanup_task
def purge_security_events() -> int:
    """Retention of the audit trail: security events past SECURITY_EVENT_RETENTION_DAYS."""
    return security_events_purge()
