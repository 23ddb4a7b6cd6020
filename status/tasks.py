"""Celery task of status: delete expired posts with their audience and views (beat entry
"status-cleanup-expired" in chatsite/settings.py CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

import logging
import time
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chatsite.time_budget import TimeBudget, cleanup_task
from status import metrics
from status.models import StatusAudience, StatusPost, StatusView

logger = logging.getLogger(__name__)


def status_cleanup(
    *, now: datetime | None = None, batch_size: int | None = None, max_batches: int | None = None
) -> dict[str, int]:
    """Delete posts expired before `now`, batch by batch: each batch is its own short transaction
    over at most STATUS_CLEANUP_BATCH_SIZE posts (oldest expiry first, rows locked with SKIP LOCKED
    so an owner deleting one at the same moment is not waited for), at most
    STATUS_CLEANUP_MAX_BATCHES batches and JOB_TIME_BUDGET_S seconds a run; the rest is left to
    the next run. No lock is held
    between batches. Idempotent. Returns {"posts_deleted", "audience_deleted", "views_deleted"}."""
    now = now or timezone.now()
    batch_size = batch_size or settings.STATUS_CLEANUP_BATCH_SIZE
    max_batches = max_batches or settings.STATUS_CLEANUP_MAX_BATCHES
    posts = audience = views = 0
    budget = TimeBudget()
    for _ in range(max_batches):
        if budget.spent():
            break
        with transaction.atomic():
            ids = list(
                StatusPost.objects.filter(expires_at__lte=now)
                .order_by("expires_at", "id")
                .select_for_update(skip_locked=True)
                .values_list("pk", flat=True)[:batch_size]
            )
            if not ids:
                break
            views += StatusView.objects.filter(post_id__in=ids).delete()[0]
            audience += StatusAudience.objects.filter(post_id__in=ids).delete()[0]
            posts += StatusPost.objects.filter(pk__in=ids).delete()[0]
        if len(ids) < batch_size:
            break
    if posts:
        metrics.STATUS_POSTS_CLEANED.inc(posts)
        logger.info("status cleanup", extra={"posts_deleted": posts, "views_deleted": views})
    return {"posts_deleted": posts, "audience_deleted": audience, "views_deleted": views}


def run_cleanup(**kwargs) -> dict[str, int]:
    """status_cleanup with its outcome in the metrics: a failure counts in
    status_cleanup_failures_total, a success sets status_cleanup_last_success_timestamp_seconds."""
    try:
        result = status_cleanup(**kwargs)
    except Exception:
        metrics.STATUS_CLEANUP_FAILURES.inc()
        logger.exception("status cleanup failed")
        raise
    metrics.STATUS_CLEANUP_LAST_SUCCESS.set(time.time())
    return result


@cleanup_task
def cleanup_expired_posts() -> dict[str, int]:
    """Expired status posts, their audience and views."""
    return run_cleanup()
