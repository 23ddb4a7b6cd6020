"""Support staff's read-only view of status posts, their audience and views. No ciphertext, media
reference or media metadata is ever shown (only whether the post is text or media)."""

from django.contrib import admin
from django.db.models import Count

from chatsite.admin_readonly import ReadOnlyModelAdmin
from status.models import StatusAudience, StatusPost, StatusView


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
    list_filter = ("audience_mode",)
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
