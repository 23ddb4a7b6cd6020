"""Support staff's view of messages, with delivery tracing. Ciphertext is never shown."""

from datetime import timedelta

from django.conf import settings
from django.contrib import admin
from django.utils import timezone

from dm.models import Delivery, Message


class UndeliveredFilter(admin.SimpleListFilter):
    """Messages with a device copy not acknowledged; "stale": queued more than
    INTEGRITY_UNDELIVERED_AFTER_S ago, exactly the integrity check dm_undelivered_stale (which
    counts messages, not copies: the Deliveries list's pending=stale shows the copies)."""

    title = "undelivered"
    parameter_name = "undelivered"

    def lookups(self, request, model_admin):
        return (("stale", "A copy unacknowledged past the alert age"),)

    def queryset(self, request, queryset):
        if self.value() == "stale":
            before = timezone.now() - timedelta(seconds=settings.INTEGRITY_UNDELIVERED_AFTER_S)
            pending = Delivery.objects.filter(delivered_at__isnull=True, created_at__lt=before)
            return queryset.filter(id__in=pending.values("message_id"))
        return queryset


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
    list_filter = (UndeliveredFilter, "created_at")
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
