"""Support staff's read-only view of presence rows: find a user's presence by username."""

from django.contrib import admin

from presence.models import UserPresence


@admin.register(UserPresence)
class UserPresenceAdmin(admin.ModelAdmin):
    list_display = ("user", "device_online", "last_seen_at", "updated_at")
    list_filter = ("device_online",)
    search_fields = ("user__username", "=user__account_id")
    fields = ("user", "device_online", "last_seen_at", "privacy_settings", "updated_at")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
