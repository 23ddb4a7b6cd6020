"""Support staff's view of E2EE devices and key bundles.

Only public keys are stored, so showing them is harmless; everything is read-only and a device
changes only through the "Revoke devices" action, which calls the same service as the API.
"""

from django.contrib import admin, messages
from django.db.models import F

from chatsite.admin_actions import confirmation, log_changed
from chatsite.admin_readonly import ReadOnlyModelAdmin
from chatsite.api.errors import ApiError
from dm.models import Device, KeyBundle
from dm.services.devices import device_revoke


class KeyBundleInline(admin.StackedInline):
    model = KeyBundle
    can_delete = False
    extra = 0
    fields = (
        "signed_prekey_id",
        "signed_prekey",
        "signed_prekey_uploaded_at",
        "fallback_key_id",
        "fallback_key",
        "prekeys_remaining",
        "updated_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ("device_id", "user", "device_name", "status", "prekeys_remaining", "last_seen_at")
    list_filter = ("status",)
    search_fields = ("user__username", "=device_id")
    list_select_related = ("user",)
    fields = (
        "device_id",
        "user",
        "device_name",
        "status",
        "identity_key",
        "signing_key",
        "created_at",
        "last_seen_at",
        "revoked_at",
    )
    readonly_fields = fields
    inlines = [KeyBundleInline]
    actions = ["revoke_devices"]

    def get_queryset(self, request):
        # A LEFT JOIN instead of obj.bundle: revoked devices have no bundle.
        return super().get_queryset(request).annotate(pool=F("bundle__prekeys_remaining"))

    @admin.display(description="prekeys remaining", ordering="pool")
    def prekeys_remaining(self, obj):
        return obj.pool

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # deleting rows would orphan sessions and streams: revoke instead

    @admin.action(
        description="Revoke devices (end sessions, delete keys and queued messages)", permissions=["change"]
    )
    def revoke_devices(self, request, queryset):
        page = confirmation(
            self,
            request,
            queryset,
            action="revoke_devices",
            title="Revoke devices",
            consequence="Their sessions end, their keys and undelivered messages are deleted and their "
            "streams close. Senders must stop encrypting for them. This cannot be undone.",
        )
        if page is not None:
            return page
        revoked, skipped = [], 0
        for device in queryset:
            try:
                device_revoke(device=device, by_user=request.user)
                revoked.append(device)
            except ApiError:  # already revoked (409 DEVICE_REVOKED)
                skipped += 1
        log_changed(self, request, revoked, "Revoked the device")
        note = f" {skipped} were already revoked." if skipped else ""
        self.message_user(request, f"Revoked {len(revoked)} device(s).{note}", messages.SUCCESS)
        return None


@admin.register(KeyBundle)
class KeyBundleAdmin(ReadOnlyModelAdmin):
    list_display = (
        "device",
        "prekeys_remaining",
        "signed_prekey_id",
        "signed_prekey_uploaded_at",
        "updated_at",
    )
    search_fields = ("=device__device_id", "device__user__username")
    list_select_related = ("device",)
    readonly_fields = (
        "device",
        "signed_prekey_id",
        "signed_prekey",
        "signed_prekey_signature",
        "signed_prekey_uploaded_at",
        "fallback_key_id",
        "fallback_key",
        "fallback_key_signature",
        "prekeys_remaining",
        "updated_at",
    )
    fields = readonly_fields
