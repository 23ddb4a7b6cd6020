"""`manage.py run_job NAME` runs one beat job now, in this process, and records the run like a
worker's (ops.jobs); `--list` shows every job with its last run (docs/operations.md "Beat jobs")."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from ops.jobs import UnknownJob, job_run, scheduled_jobs
from ops.models import JobRun


class Command(BaseCommand):
    help = "Run one Celery beat job (by its CELERY_BEAT_SCHEDULE name) now; --list shows them."

    def add_arguments(self, parser):
        parser.add_argument("name", nargs="?", help="the job's schedule name, e.g. status-cleanup-expired")
        parser.add_argument("--list", action="store_true", help="list the jobs and their last runs")

    def handle(self, *args, name=None, list=False, **options):
        if list or not name:
            return self._list()
        try:
            outcome = job_run(name=name)
        except UnknownJob:
            raise CommandError(f"no beat job {name!r}; `run_job --list` shows them") from None
        if not outcome.ok:
            raise CommandError(f"{name} failed after {outcome.duration_ms:.0f} ms: {outcome.result!r}")
        self.stdout.write(
            self.style.SUCCESS(
                f"{name}: {outcome.rows} rows handled in {outcome.duration_ms:.0f} ms "
                f"{json.dumps(outcome.result, default=str)}"
            )
        )

    def _list(self) -> None:
        runs = {r.job_name: r for r in JobRun.objects.all()}
        for name, job in sorted(scheduled_jobs().items()):
            run = runs.get(name)
            every = f"every {job.interval_s:g} s" if job.interval_s else "crontab"
            last = (
                f"last success {run.last_success_at:%Y-%m-%d %H:%M:%S} ({run.last_rows} rows), "
                f"{run.failures} failures of {run.runs}"
                if run and run.last_success_at
                else (f"never succeeded, {run.failures} failures of {run.runs}" if run else "never run")
            )
            self.stdout.write(f"{name:32} {job.task:50} {every:16} {last}")
