"""List filters shared by the apps' admins (chatsite imports no domain app: each app passes its
own field names and setting)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib import admin
from django.utils import timezone


def unacknowledged_filter(*, acked_field: str, age_setting: str, doc: str) -> type[admin.SimpleListFilter]:
    """A "pending" filter: "any" lists rows whose `acked_field` is NULL; "stale" those of them
    created more than settings.<age_setting> seconds ago, the condition of the integrity check of
    that name (read at request time, so override_settings applies)."""

    class PendingFilter(admin.SimpleListFilter):
        __doc__ = doc
        title = "pending"
        parameter_name = "pending"

        def lookups(self, request, model_admin):
            return (("any", "Not acknowledged"), ("stale", "Not acknowledged, past the alert age"))

        def queryset(self, request, queryset):
            pending = {f"{acked_field}__isnull": True}
            if self.value() == "any":
                return queryset.filter(**pending)
            if self.value() == "stale":
                before = timezone.now() - timedelta(seconds=getattr(settings, age_setting))
                return queryset.filter(**pending, created_at__lt=before)
            return queryset

    return PendingFilter
