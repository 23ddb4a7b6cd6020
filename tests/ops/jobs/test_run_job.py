"""Beat-job tracking: `manage.py run_job NAME` runs a job through Celery's tracer, ops_job_runs
records its success (time, rows) or failure, and /metrics shows both."""

from __future__ import annotations

import uuid
from datetime import timedelta
from io import StringIO

import pytest
from celery import shared_task, signals
from celery.exceptions import Retry
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from chatsite.accounts.models import SecurityEvent
from ops.models import JobRun

pytestmark = pytest.mark.django_db(transaction=True)


@shared_task(name="tests.ops.jobs.always_fails")
def always_fails() -> int:
    raise RuntimeError("the disk is full")


RETRYING_SCHEDULE = {
    **settings.CELERY_BEAT_SCHEDULE,
    "test-always-fails": {"task": "tests.ops.jobs.always_fails", "schedule": 60.0},
}


def _attempt(state: str, retval) -> None:
    """One attempt of always_fails as a worker's tracer reports it (Celery's eager apply() cannot
    run a task's retries without raising, so the signals are sent as a worker sends them)."""
    task_id = str(uuid.uuid4())
    signals.task_prerun.send(sender=always_fails, task_id=task_id, task=always_fails)
    signals.task_postrun.send(
        sender=always_fails, task_id=task_id, task=always_fails, retval=retval, state=state
    )


FAILING_SCHEDULE = {
    **settings.CELERY_BEAT_SCHEDULE,
    "test-always-fails": {"task": "tests.ops.jobs.always_fails", "schedule": 60.0},
}


def _samples(client, name: str) -> dict[str, float]:
    text = client.get("/metrics").content.decode()
    return {
        sample.labels["job_name"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


@override_settings(SECURITY_EVENT_RETENTION_DAYS=30)
def test_run_job_records_the_last_success_and_rows_and_metrics_show_them(client):
    for _ in range(3):
        SecurityEvent.objects.create(
            kind=SecurityEvent.Kind.LOGIN_FAILED, created_at=timezone.now() - timedelta(days=31)
        )
    out = StringIO()
    before = timezone.now()

    call_command("run_job", "accounts-purge-security-events", stdout=out)

    assert "accounts-purge-security-events: 3 rows handled" in out.getvalue()
    run = JobRun.objects.get(job_name="accounts-purge-security-events")
    assert run.last_success_at >= before and run.last_rows == 3 and run.runs == 1 and run.failures == 0
    assert _samples(client, "beat_job_last_rows")["accounts-purge-security-events"] == 3
    success = _samples(client, "beat_job_last_success_timestamp_seconds")
    assert success["accounts-purge-security-events"] == pytest.approx(run.last_success_at.timestamp())
    assert not SecurityEvent.objects.exists()


def test_a_dict_result_counts_the_sum_of_its_rows():
    call_command("run_job", "groups-purge-messages", stdout=StringIO())
    call_command("run_job", "groups-purge-messages", stdout=StringIO())

    run = JobRun.objects.get(job_name="groups-purge-messages")
    assert run.runs == 2 and run.last_rows == 0 and run.last_success_at is not None


@override_settings(CELERY_BEAT_SCHEDULE=FAILING_SCHEDULE)
def test_a_failing_job_records_the_failure_and_the_command_fails(client):
    with pytest.raises(CommandError, match="test-always-fails failed"):
        call_command("run_job", "test-always-fails", stdout=StringIO())

    run = JobRun.objects.get(job_name="test-always-fails")
    assert run.failures == 1 and run.last_success_at is None and run.last_failure_at is not None
    assert run.last_error == "RuntimeError: the disk is full"
    assert _samples(client, "beat_job_failures_total")["test-always-fails"] == 1
    assert _samples(client, "beat_job_last_success_timestamp_seconds")["test-always-fails"] == 0


@override_settings(CELERY_BEAT_SCHEDULE=RETRYING_SCHEDULE)
def test_a_run_that_fails_after_its_retries_counts_one_failure(client):
    error = RuntimeError("the disk is full")
    for _ in range(3):
        _attempt("RETRY", Retry(exc=error))
    _attempt("FAILURE", error)

    run = JobRun.objects.get(job_name="test-always-fails")
    assert run.runs == 4 and run.failures == 1
    assert _samples(client, "beat_job_failures_total")["test-always-fails"] == 1


@override_settings(CELERY_BEAT_SCHEDULE=RETRYING_SCHEDULE)
def test_a_retry_that_then_succeeds_is_no_failure(client):
    _attempt("RETRY", Retry(exc=RuntimeError("a blip")))
    _attempt("SUCCESS", 2)

    run = JobRun.objects.get(job_name="test-always-fails")
    assert run.runs == 2 and run.failures == 0 and run.last_rows == 2
    assert _samples(client, "beat_job_failures_total")["test-always-fails"] == 0


def test_an_unknown_job_is_a_command_error():
    with pytest.raises(CommandError, match="no beat job 'nope'"):
        call_command("run_job", "nope")
    assert not JobRun.objects.exists()


def test_list_names_every_scheduled_job_with_its_task():
    out = StringIO()
    call_command("run_job", "--list", stdout=out)
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert any(line.split()[:2] == [name, entry["task"]] for line in out.getvalue().splitlines()), name


def test_every_job_exports_its_interval(client):
    intervals = _samples(client, "beat_job_interval_seconds")
    assert intervals["presence-sweep"] == float(settings.PRESENCE_HEARTBEAT_S)
    assert set(intervals) == set(settings.CELERY_BEAT_SCHEDULE)
