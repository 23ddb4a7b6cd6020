"""Support staff's read-only view of conversations, per-device deliveries and queues: delivery
tracing by message, device or user. No ciphertext is ever loaded or shown."""

from django.contrib import admin

from chatsite.admin_filters import unacknowledged_filter
from chatsite.admin_readonly import ReadOnlyModelAdmin
from dm.models import Conversation, Delivery, DeviceQueue

PendingFilter = unacknowledged_filter(
    acked_field="delivered_at",
    age_setting="INTEGRITY_UNDELIVERED_AFTER_S",
    doc='Copies a device has not acknowledged; "stale": older than INTEGRITY_UNDELIVERED_AFTER_S.',
)


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "user_low", "user_high", "created_at")
    search_fields = ("=id", "user_low__username", "user_high__username")
    list_select_related = ("user_low", "user_high")


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyModelAdmin):
    list_display = ("message_id", "device", "recipient_user", "seq", "created_at", "sent_at", "delivered_at")
    list_filter = (PendingFilter,)
    search_fields = (
        "=message__id",
        "=device__device_id",
        "recipient_user__username",
        "=message__client_message_id",
    )
    list_select_related = ("device", "recipient_user")
    fields = (
        "message",
        "device",
        "recipient_user",
        "seq",
        "message_type",
        "created_at",
        "sent_at",
        "delivered_at",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).defer("ciphertext")


@admin.register(DeviceQueue)
class DeviceQueueAdmin(ReadOnlyModelAdmin):
    list_display = ("device", "last_seq", "acked_seq")
    search_fields = ("=device__device_id", "device__user__username")
    list_select_related = ("device",)
