"""Beat jobs: which Celery task each CELERY_BEAT_SCHEDULE entry runs, and what its runs did
(docs/operations.md "Beat jobs").

Every run of a scheduled task, in a worker or through `manage.py run_job`, is recorded in
ops_job_runs (ops.models.JobRun, one row per job) by the Celery signals below, so no domain app
knows about ops: a task only returns what it handled. Rows handled = the task's return value: an
int, or a dict of counts (their sum: e.g. dm's {"acked_purged", "unacked_expired",
"messages_deleted"}). /metrics reads the table (ops.metrics), so a job run by a worker shows on
every web process.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from celery import signals
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from ops.models import JobRun

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    name: str  # the CELERY_BEAT_SCHEDULE key
    task: str  # the Celery task name
    interval_s: float | None  # None: a crontab or other non-interval schedule
    args: tuple
    kwargs: dict


def _interval(schedule: Any) -> float | None:
    if isinstance(schedule, int | float):
        return float(schedule)
    run_every = getattr(schedule, "run_every", None)  # celery.schedules.schedule
    return run_every.total_seconds() if run_every is not None else None


def scheduled_jobs() -> dict[str, Job]:
    """The beat schedule as jobs, by name (read from settings each time: tests override it)."""
    return {
        name: Job(
            name=name,
            task=entry["task"],
            interval_s=_interval(entry.get("schedule")),
            args=tuple(entry.get("args", ())),
            kwargs=dict(entry.get("kwargs", {})),
        )
        for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
    }


def job_for_task(task_name: str) -> str | None:
    """The schedule entry running this task (each task is scheduled once: tests/ops/jobs)."""
    for job in scheduled_jobs().values():
        if job.task == task_name:
            return job.name
    return None


def rows_handled(result: Any) -> int:
    """A task's return value as rows handled: an int, or the sum of a dict's int values."""
    if isinstance(result, bool):
        return int(result)
    if isinstance(result, int):
        return result
    if isinstance(result, dict):
        return sum(v for v in result.values() if isinstance(v, int) and not isinstance(v, bool))
    return 0


# Start times by Celery task id, this process only (prerun and postrun run in the same process).
_started: dict[str, float] = {}


def _save(job_name: str, **fields: Any) -> None:
    """Record after (or before) the task's own transactions; a database that is down loses the
    record, never the job. Counters grow in the UPDATE itself (F(), under the row's lock), so two
    workers finishing at once lose no count."""
    try:
        with transaction.atomic():
            JobRun.objects.get_or_create(job_name=job_name)
            JobRun.objects.filter(job_name=job_name).update(**fields)
    except DatabaseError:
        logger.warning("could not record a beat job run", extra={"job": job_name}, exc_info=True)


@signals.task_prerun.connect(dispatch_uid="ops.jobs.prerun")
def _on_prerun(sender=None, task_id=None, task=None, **_kwargs) -> None:
    job = job_for_task(getattr(task, "name", ""))
    if job is None:
        return
    _started[task_id] = time.monotonic()
    _save(job, last_started_at=timezone.now(), runs=F("runs") + 1)


@signals.task_postrun.connect(dispatch_uid="ops.jobs.postrun")
def _on_postrun(sender=None, task_id=None, task=None, retval=None, state=None, **_kwargs) -> None:
    job = job_for_task(getattr(task, "name", ""))
    if job is None:
        return
    started = _started.pop(task_id, None)
    duration_ms = (time.monotonic() - started) * 1000 if started is not None else 0.0
    now = timezone.now()
    if state == "SUCCESS":
        _save(job, last_success_at=now, last_rows=rows_handled(retval), last_duration_ms=duration_ms)
        logger.info(
            "beat job done", extra={"job": job, "rows": rows_handled(retval), "ms": round(duration_ms)}
        )
    elif state == "RETRY":
        # A retry is not a failure: only the final attempt's outcome counts, so one flaky run
        # adds at most one to beat_job_failures_total (BeatJobFailing, docs/operations.md).
        logger.info("beat job retrying", extra={"job": job})
    elif state == "FAILURE":
        error = getattr(retval, "exception", retval)  # an ExceptionInfo, or the exception itself
        _save(
            job,
            last_failure_at=now,
            # The first line only: a database error's DETAIL line may quote row values.
            last_error=f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:200],
            last_duration_ms=duration_ms,
            failures=F("failures") + 1,
        )
        logger.warning("beat job failed", extra={"job": job, "state": state, "error": type(error).__name__})


class UnknownJob(LookupError):
    pass


@dataclass(frozen=True)
class JobOutcome:
    job: str
    ok: bool
    result: Any
    rows: int
    duration_ms: float


def job_run(*, name: str) -> JobOutcome:
    """Run one scheduled job now, in this process (`manage.py run_job`): the same task, through
    Celery's tracer (task.apply), so the signals above record it exactly like a worker's run."""
    from chatsite.celery import app

    job = scheduled_jobs().get(name)
    if job is None:
        raise UnknownJob(name)
    app.loader.import_default_modules()
    task = app.tasks[job.task]
    started = time.monotonic()
    # throw=False: a failure is recorded by the signals and reported here, not raised mid-trace.
    result = task.apply(args=job.args, kwargs=job.kwargs, throw=False)
    duration_ms = (time.monotonic() - started) * 1000
    ok = result.successful()
    value = result.result
    return JobOutcome(
        job=name, ok=ok, result=value, rows=rows_handled(value) if ok else 0, duration_ms=duration_ms
    )


class JobRunCollector:
    """/metrics, read from ops_job_runs at scrape time (one row per job: a few dozen at most). The
    label is `job_name`, not `job`: Prometheus sets `job` on every series to the scrape job.

    - beat_job_last_success_timestamp_seconds{job_name}: unix time of the last success (0: none yet);
      only for jobs that have started at least once, so a fresh deployment does not alert;
    - beat_job_last_rows{job_name}: rows the last successful run handled;
    - beat_job_last_duration_seconds{job_name}: how long the last run took;
    - beat_job_runs_total{job_name}: attempts started (each Celery retry is an attempt);
    - beat_job_failures_total{job_name}: runs that finally failed (a retried attempt is not a
      failure; only the last attempt's failure counts);
    - beat_job_interval_seconds{job_name}: the schedule's interval (the alert allows three of them).
    """

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        jobs = scheduled_jobs()
        try:
            runs = {r.job_name: r for r in JobRun.objects.filter(job_name__in=list(jobs))}
        except DatabaseError:
            return
        success = GaugeMetricFamily(
            "beat_job_last_success_timestamp_seconds",
            "Unix time of the job's last success (0: none)",
            labels=["job_name"],
        )
        rows = GaugeMetricFamily(
            "beat_job_last_rows", "Rows the job's last successful run handled", labels=["job_name"]
        )
        duration = GaugeMetricFamily(
            "beat_job_last_duration_seconds", "Duration of the job's last run", labels=["job_name"]
        )
        total = CounterMetricFamily("beat_job_runs", "Runs of the job started", labels=["job_name"])
        failures = CounterMetricFamily(
            "beat_job_failures", "Runs of the job that finally failed (retries excluded)", labels=["job_name"]
        )
        interval = GaugeMetricFamily(
            "beat_job_interval_seconds",
            "The job's schedule interval (0: not an interval)",
            labels=["job_name"],
        )
        for name, job in sorted(jobs.items()):
            interval.add_metric([name], job.interval_s or 0)
            run = runs.get(name)
            if run is None:
                continue
            success.add_metric([name], run.last_success_at.timestamp() if run.last_success_at else 0)
            rows.add_metric([name], run.last_rows)
            duration.add_metric([name], run.last_duration_ms / 1000)
            total.add_metric([name], run.runs)
            failures.add_metric([name], run.failures)
        yield from (success, rows, duration, total, failures, interval)

    def describe(self):
        return []


job_run_collector = JobRunCollector()
