"""Support staff's read-only view of one-time prekeys: which key ids a device has left and when
they were uploaded. The keys themselves are never shown (a prekey pool is counted, not read)."""

from django.contrib import admin

from chatsite.admin_readonly import ReadOnlyModelAdmin
from dm.models import OneTimePrekey


@admin.register(OneTimePrekey)
class OneTimePrekeyAdmin(ReadOnlyModelAdmin):
    list_display = ("device", "key_id", "uploaded_at")
    search_fields = ("=device__device_id", "device__user__username")
    list_select_related = ("device",)
    fields = ("device", "key_id", "uploaded_at")
    readonly_fields = fields

    def get_queryset(self, request):
        # The device is shown by name and id: its public keys are not loaded either.
        return (
            super().get_queryset(request).defer("public_key", "device__identity_key", "device__signing_key")
        )
