"""What the operators' tooling remembers between runs: the last result of each integrity check
and the last run of each beat job. Both are read by the /metrics collectors and the staff
dashboard, so a check or job that runs in a Celery worker shows on every web process."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class IntegrityResult(models.Model):
    """The latest run of one integrity check (ops/integrity): one row per check name."""

    check_name = models.CharField(max_length=64, primary_key=True)
    severity = models.CharField(max_length=16)
    violations = models.IntegerField(default=0)
    # The failure when the check's query did not finish (statement timeout, database down).
    error = models.CharField(max_length=200, blank=True, default="")
    duration_ms = models.FloatField(default=0)
    checked_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "ops_integrity_results"
        ordering = ["check_name"]

    def __str__(self) -> str:
        return f"{self.check_name}: {self.violations}"


class JobRun(models.Model):
    """The last run of one beat job (ops/jobs): one row per job name."""

    job_name = models.CharField(max_length=64, primary_key=True)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=200, blank=True, default="")
    last_rows = models.BigIntegerField(default=0)
    last_duration_ms = models.FloatField(default=0)
    runs = models.BigIntegerField(default=0)
    failures = models.BigIntegerField(default=0)

    class Meta:
        db_table = "ops_job_runs"
        ordering = ["job_name"]

    def __str__(self) -> str:
        return self.job_name
