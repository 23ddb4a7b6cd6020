"""Celery tasks of ops (beat entries in chatsite/settings.py CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task

from ops.integrity.services import integrity_run


@shared_task(name="ops.tasks.run_integrity_checks")
def run_integrity_checks() -> int:
    """Run every integrity check and store the results (beat entry "ops-integrity-checks", every
    INTEGRITY_CHECK_INTERVAL_S). A failing or timed-out check is recorded, not raised; returns how
    many checks ran."""
    return len(integrity_run())
