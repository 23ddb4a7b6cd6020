"""Support staff's view of E2EE devices and key bundles.

Only public keys are stored, so showing them is harmless; everything is read-only and a device
changes only through the "Revoke devices" action, which calls the same service as the API.
"""

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import F
from django.template.response import TemplateResponse

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
        if request.POST.get("confirm") != "yes":
            return TemplateResponse(
                request,
                "admin/chatsite/confirm_action.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Revoke devices",
                    "consequence": "Their sessions end, their keys and undelivered messages are deleted and "
                    "their streams close. Senders must stop encrypting for them. This cannot be undone.",
                    "objects": queryset,
                    "action": "revoke_devices",
                    "action_checkbox_name": ACTION_CHECKBOX_NAME,
                    "opts": self.model._meta,
                },
            )
        revoked = skipped = 0
        for device in queryset:
            try:
                device_revoke(device=device, by_user=request.user)
                revoked += 1
            except ApiError:  # already revoked (409 DEVICE_REVOKED)
                skipped += 1
        note = f" {skipped} were already revoked." if skipped else ""
        self.message_user(request, f"Revoked {revoked} device(s).{note}", messages.SUCCESS)
        return None


@admin.register(KeyBundle)
class KeyBundleAdmin(admin.ModelAdmin):
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

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
