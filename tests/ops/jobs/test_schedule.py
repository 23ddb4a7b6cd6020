"""The beat schedule names only registered Celery tasks, each once, each bounded by a soft time
limit; docs/operations.md "Beat jobs" lists exactly the scheduled jobs."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

from chatsite.celery import app
from ops.jobs import scheduled_jobs

DOC = Path(settings.BASE_DIR) / "docs" / "operations.md"


def _registered_tasks():
    app.loader.import_default_modules()
    return app.tasks


def test_every_beat_entry_names_a_registered_task():
    tasks = _registered_tasks()
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert entry["task"] in tasks, f"beat entry {name} names no registered task {entry['task']}"


def test_each_task_is_scheduled_once():
    names = [entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()]
    assert len(names) == len(set(names))


def test_the_issue_17_jobs_are_scheduled():
    tasks = {job.task for job in scheduled_jobs().values()}
    assert {
        "groups.tasks.purge_invites",
        "groups.tasks.sweep_rooms",
        "chatsite.accounts.tasks.purge_security_events",
        "dm.tasks.remind_low_prekeys",
        "status.tasks.cleanup_expired_posts",
        "dm.tasks.purge_deliveries",
        "presence.tasks.sweep_presence",
    } <= tasks


CLEANUP_JOBS = [
    "dm-purge-deliveries",
    "dm-remind-low-prekeys",
    "groups-purge-messages",
    "groups-purge-invites",
    "groups-sweep-rooms",
    "status-cleanup-expired",
    "accounts-purge-security-events",
]


def test_cleanup_tasks_have_a_soft_time_limit():
    tasks = _registered_tasks()
    jobs = scheduled_jobs()
    for name in CLEANUP_JOBS:
        assert tasks[jobs[name].task].soft_time_limit == settings.JOB_SOFT_TIME_LIMIT_S, name


def _doc_table() -> dict[str, tuple[str, str]]:
    section = DOC.read_text().split("## Beat jobs", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 3:
            job, schedule, task = (re.sub(r"`", "", c) for c in cells[:3])
            rows[job] = (schedule, task)
    return rows


def test_the_operations_doc_lists_every_scheduled_job_with_its_task_and_schedule():
    table = _doc_table()
    jobs = scheduled_jobs()
    assert set(table) == set(jobs)
    for name, job in jobs.items():
        schedule, task = table[name]
        assert task == job.task, name
        if name.startswith("presence-"):  # derived from PRESENCE_* settings, named there
            continue
        assert schedule == f"every {job.interval_s:g} s", name
