"""The ops tables in the admin, read-only: they are written by the integrity runner and the beat
jobs, and a hand edit would only hide a failure. The staff dashboard (ops/dashboard) shows the
integrity results with links to their rows; these pages are the raw history."""

from django.contrib import admin

from chatsite.admin_readonly import ReadOnlyModelAdmin
from ops.models import IntegrityResult, JobRun


@admin.register(IntegrityResult)
class IntegrityResultAdmin(ReadOnlyModelAdmin):
    list_display = ("check_name", "severity", "violations", "error", "duration_ms", "checked_at")
    list_filter = ("severity",)
    search_fields = ("check_name",)


@admin.register(JobRun)
class JobRunAdmin(ReadOnlyModelAdmin):
    list_display = (
        "job_name",
        "last_success_at",
        "last_failure_at",
        "last_rows",
        "runs",
        "failures",
        "last_error",
    )
    search_fields = ("job_name",)
