"""Support staff's read-only view of presence rows: find a user's presence by username."""

from django.contrib import admin

from chatsite.admin_readonly import ReadOnlyModelAdmin
from presence.models import UserPresence


@admin.register(UserPresence)
class UserPresenceAdmin(ReadOnlyModelAdmin):
    list_display = ("user", "device_online", "last_seen_at", "updated_at")
    list_filter = ("device_online",)
    search_fields = ("user__username", "=user__account_id")
    fields = ("user", "device_online", "last_seen_at", "privacy_settings", "updated_at")
    readonly_fields = fields
