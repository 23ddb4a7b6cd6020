"""A time budget for batched beat jobs (docs/operations.md "Beat jobs").

A job's loop asks `budget.spent()` before each batch: once JOB_TIME_BUDGET_S has passed it stops
starting new batches (each batch is its own short transaction, so stopping between two loses
nothing) and the next scheduled run carries on where this one stopped.
"""

from __future__ import annotations

import time

from django.conf import settings


class TimeBudget:
    def __init__(self, seconds: float | None = None) -> None:
        self.seconds = settings.JOB_TIME_BUDGET_S if seconds is None else seconds
        self.deadline = time.monotonic() + self.seconds

    def spent(self) -> bool:
        return time.monotonic() >= self.deadline
