"""Support staff's read-only view of presence rows: find a user's presence by username."""

from datetime import timedelta

from django.conf import settings
from django.contrib import admin
from django.db.models import Q
from django.utils import timezone

from chatsite.admin_readonly import ReadOnlyModelAdmin
from presence.models import UserPresence


class StuckOnlineFilter(admin.SimpleListFilter):
    """Shown online with no heartbeat for INTEGRITY_PRESENCE_STUCK_AFTER_S: the integrity check
    presence_stuck_online (the presence sweep is not clearing them)."""

    title = "stuck online"
    parameter_name = "stuck"

    def lookups(self, request, model_admin):
        return (("yes", "Yes"),)

    def queryset(self, request, queryset):
        if self.value() == "yes":
            before = timezone.now() - timedelta(seconds=settings.INTEGRITY_PRESENCE_STUCK_AFTER_S)
            return queryset.filter(
                Q(last_seen_at__isnull=True) | Q(last_seen_at__lt=before), device_online=True
            )
        return queryset


@admin.register(UserPresence)
class UserPresenceAdmin(ReadOnlyModelAdmin):
    list_display = ("user", "device_online", "last_seen_at", "updated_at")
    list_filter = ("device_online", StuckOnlineFilter)
    search_fields = ("user__username", "=user__account_id")
    fields = ("user", "device_online", "last_seen_at", "privacy_settings", "updated_at")
    readonly_fields = fields
