"""Support staff's view of messages, with delivery tracing. Ciphertext is never shown."""

from django.contrib import admin

from dm.models import Delivery, Message


class DeliveryInline(admin.TabularInline):
    model = Delivery
    fields = ("device", "recipient_user", "seq", "message_type", "created_at", "sent_at", "delivered_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "conversation_id",
        "sender_user",
        "sender_device_id",
        "created_at",
        "recipients",
        "acked",
    )
    list_filter = ("created_at",)
    search_fields = ("=id", "sender_user__username", "=client_message_id")
    fields = ("id", "conversation", "sender_user", "sender_device", "client_message_id", "created_at")
    readonly_fields = fields
    inlines = [DeliveryInline]

    def get_queryset(self, request):
        from django.db.models import Count, Q

        return (
            super()
            .get_queryset(request)
            .select_related("sender_user")
            .annotate(
                n_recipients=Count("deliveries"),
                n_acked=Count("deliveries", filter=Q(deliveries__delivered_at__isnull=False)),
            )
        )

    @admin.display(description="devices")
    def recipients(self, obj) -> int:
        return obj.n_recipients

    @admin.display(description="acknowledged")
    def acked(self, obj) -> int:
        return obj.n_acked

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # the delivery record is evidence; retention deletes it (DM_*_RETENTION_*)
