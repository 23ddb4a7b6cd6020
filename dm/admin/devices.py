"""Support staff's view of E2EE devices and key bundles.

Only public keys are stored, but the server never displays key material (README): the pages show
key ids, pool sizes and upload times, never a key or a signature, and never load those columns.
Everything is read-only; a device changes only through the "Revoke devices" action, which calls
the same service as the API.
"""

from datetime import timedelta

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import F
from django.utils import timezone

from chatsite.admin_actions import confirmation, log_changed, reason_of
from chatsite.admin_readonly import ReadOnlyModelAdmin
from chatsite.api.errors import ApiError
from dm.models import Device, KeyBundle
from dm.selectors.devices import device_revoke_plan
from dm.services.devices import device_revoke


class PrekeyPoolFilter(admin.SimpleListFilter):
    """Seed 001 "Stuck Device Remediation": active devices whose one-time prekey pool is below
    E2EE_OTPK_CRITICAL (critical) or E2EE_OTPK_LOW_WATERMARK (low, critical ones included)."""

    title = "prekey pool"
    parameter_name = "pool"

    def lookups(self, request, model_admin):
        return (("critical", "Critical"), ("low", "Low"))

    def queryset(self, request, queryset):
        below = {"critical": settings.E2EE_OTPK_CRITICAL, "low": settings.E2EE_OTPK_LOW_WATERMARK}
        if self.value() in below:
            return queryset.filter(
                status=Device.Status.ACTIVE, bundle__prekeys_remaining__lt=below[self.value()]
            )
        return queryset


class SignedPrekeyAgeFilter(admin.SimpleListFilter):
    """Active devices whose signed prekey is older than E2EE_SIGNED_PREKEY_MAX_AGE_DAYS."""

    title = "signed prekey"
    parameter_name = "signed_prekey"

    def lookups(self, request, model_admin):
        return (("stale", "Older than the maximum age"),)

    def queryset(self, request, queryset):
        if self.value() == "stale":
            before = timezone.now() - timedelta(days=settings.E2EE_SIGNED_PREKEY_MAX_AGE_DAYS)
            return queryset.filter(status=Device.Status.ACTIVE, bundle__signed_prekey_uploaded_at__lt=before)
        return queryset


# Public keys and their signatures: stored for clients, never shown or loaded by the admin.
# Devices whose revoke plan (three counts each) the confirmation page lists; the rest are counted.
REVOKE_PLANS_SHOWN = 20

BUNDLE_KEY_COLUMNS = ("signed_prekey", "signed_prekey_signature", "fallback_key", "fallback_key_signature")


class KeyBundleInline(admin.StackedInline):
    model = KeyBundle
    can_delete = False
    extra = 0
    fields = (
        "signed_prekey_id",
        "signed_prekey_uploaded_at",
        "fallback_key_id",
        "prekeys_remaining",
        "updated_at",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).defer(*BUNDLE_KEY_COLUMNS)

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ("device_id", "user", "device_name", "status", "prekeys_remaining", "last_seen_at")
    list_filter = ("status", PrekeyPoolFilter, SignedPrekeyAgeFilter)
    search_fields = ("user__username", "=device_id")
    list_select_related = ("user",)
    fields = (
        "device_id",
        "user",
        "device_name",
        "status",
        "created_at",
        "last_seen_at",
        "revoked_at",
    )
    readonly_fields = fields
    inlines = [KeyBundleInline]
    actions = ["revoke_devices"]

    def get_queryset(self, request):
        # A LEFT JOIN instead of obj.bundle: revoked devices have no bundle.
        return (
            super()
            .get_queryset(request)
            .defer("identity_key", "signing_key")
            .annotate(pool=F("bundle__prekeys_remaining"))
        )

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
        confirmed = request.POST.get("confirm") == "yes" and reason_of(request)
        plans = [] if confirmed else [device_revoke_plan(d) for d in queryset[:REVOKE_PLANS_SHOWN]]
        details = [plan.describe() for plan in plans]
        if not confirmed and (more := queryset.count() - len(plans)) > 0:
            details.append(f"… and {more} more device(s)")
        page = confirmation(
            self,
            request,
            queryset,
            action="revoke_devices",
            title="Revoke devices",
            consequence="Their sessions end, their keys and undelivered messages are deleted and their "
            "streams close. Senders must stop encrypting for them. This cannot be undone.",
            ask_reason=True,
            details=details,
        )
        if page is not None:
            return page
        reason = reason_of(request)
        revoked, skipped = [], 0
        for device in queryset:
            try:
                device_revoke(device=device, by_user=request.user, reason=reason)
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
        "signed_prekey_uploaded_at",
        "fallback_key_id",
        "prekeys_remaining",
        "updated_at",
    )
    fields = readonly_fields

    def get_queryset(self, request):
        # The device is shown by name and id: its public keys are not loaded.
        return (
            super()
            .get_queryset(request)
            .defer(*BUNDLE_KEY_COLUMNS, "device__identity_key", "device__signing_key")
        )
