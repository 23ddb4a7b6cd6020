"""A time budget for batched beat jobs (docs/operations.md "Beat jobs").

A job's loop asks `budget.spent()` before each batch: once JOB_TIME_BUDGET_S has passed it stops
starting new batches (each batch is its own short transaction, so stopping between two loses
nothing) and the next scheduled run carries on where this one stopped. `cleanup_task` is the one
set of Celery options those jobs share.
"""

from __future__ import annotations

import time

from celery import shared_task
from django.conf import settings


class TimeBudget:
    def __init__(self, seconds: float | None = None) -> None:
        self.seconds = settings.JOB_TIME_BUDGET_S if seconds is None else seconds
        self.deadline = time.monotonic() + self.seconds

    def spent(self) -> bool:
        return time.monotonic() >= self.deadline


def cleanup_task(func):
    """@shared_task for a batched cleanup job: retried (3 times, with backoff) on any error, since
    a run is idempotent, and cut off by Celery at JOB_SOFT_TIME_LIMIT_S above the time budget."""
    return shared_task(
        autoretry_for=(Exception,),
        retry_backoff=True,
        max_retries=3,
        soft_time_limit=settings.JOB_SOFT_TIME_LIMIT_S,
    )(func)
