"""Support staff's read-only view of status posts, their audience and views. No ciphertext, media
reference or media metadata is ever shown (only whether the post is text or media)."""

from datetime import timedelta

from django.conf import settings
from django.contrib import admin
from django.db.models import Count
from django.utils import timezone

from chatsite.admin_readonly import ReadOnlyModelAdmin
from status.models import StatusAudience, StatusPost, StatusView


class ExpiredFilter(admin.SimpleListFilter):
    """Seed 000 "Find expired status posts": expired but still stored; "uncleaned" is the
    integrity check's (expired longer than INTEGRITY_STATUS_EXPIRED_GRACE_S ago)."""

    title = "expired"
    parameter_name = "expired"

    def lookups(self, request, model_admin):
        return (("yes", "Yes"), ("uncleaned", "Past the clean-up grace"), ("no", "No"))

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "yes":
            return queryset.filter(expires_at__lt=now)
        if self.value() == "uncleaned":
            return queryset.filter(
                expires_at__lt=now - timedelta(seconds=settings.INTEGRITY_STATUS_EXPIRED_GRACE_S)
            )
        if self.value() == "no":
            return queryset.filter(expires_at__gte=now)
        return queryset


class AudienceInline(admin.TabularInline):
    model = StatusAudience
    fields = ("viewer",)
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class ViewInline(AudienceInline):
    model = StatusView
    fields = ("viewer", "viewed_at")
    readonly_fields = fields


@admin.register(StatusPost)
class StatusPostAdmin(ReadOnlyModelAdmin):
    list_display = (
        "id",
        "owner",
        "kind",
        "audience_mode",
        "audience_size",
        "post_epoch",
        "created_at",
        "expires_at",
    )
    list_filter = ("audience_mode", ExpiredFilter)
    search_fields = ("=id", "owner__username")
    list_select_related = ("owner",)
    fields = ("id", "owner", "kind", "audience_mode", "post_epoch", "created_at", "expires_at")
    readonly_fields = fields
    inlines = [AudienceInline, ViewInline]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .defer("ciphertext", "media_meta")
            .annotate(n_audience=Count("audience"))
        )

    @admin.display(description="content")
    def kind(self, obj):
        return "media" if obj.media_ref else "ciphertext"

    @admin.display(description="audience", ordering="n_audience")
    def audience_size(self, obj):
        return obj.n_audience


@admin.register(StatusView)
class StatusViewAdmin(ReadOnlyModelAdmin):
    list_display = ("post", "viewer", "viewed_at")
    search_fields = ("=post__id", "viewer__username")
    list_select_related = ("post", "viewer")


@admin.register(StatusAudience)
class StatusAudienceAdmin(ReadOnlyModelAdmin):
    list_display = ("post", "viewer")
    search_fields = ("=post__id", "viewer__username", "post__owner__username")
    list_select_related = ("post", "viewer")
