"""Support staff's read-only view of groups, members and invites (search by id, title or a
member's username). No ciphertext and no full invite code is ever shown; remediations (promote an
owner, bans) are actions over the services, in the operators' issue."""

from django.contrib import admin

from chatsite.admin_readonly import ReadOnlyModelAdmin
from groups.models import Group, Invite, Participant


class ParticipantInline(admin.TabularInline):
    model = Participant
    fields = ("user", "role", "is_banned", "joined_at", "banned_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Group)
class GroupAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "title", "member_count", "max_participants", "group_epoch", "created_at")
    search_fields = ("=id", "title", "participants__user__username")
    fields = (
        "id",
        "title",
        "member_count",
        "max_participants",
        "group_epoch",
        "last_seq",
        "created_by",
        "created_at",
    )
    readonly_fields = fields
    inlines = [ParticipantInline]


@admin.register(Participant)
class ParticipantAdmin(ReadOnlyModelAdmin):
    list_display = ("group", "user", "role", "is_banned", "joined_at")
    list_filter = ("role", "is_banned")
    search_fields = ("=group__id", "group__title", "user__username")
    list_select_related = ("group", "user")


@admin.register(Invite)
class InviteAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "group", "code_hint", "uses", "max_uses", "expires_at", "created_at")
    search_fields = ("=group__id", "group__title")
    fields = ("id", "group", "code_hint", "uses", "max_uses", "expires_at", "created_by", "created_at")
    readonly_fields = fields
    list_select_related = ("group",)

    @admin.display(description="code")
    def code_hint(self, obj) -> str:
        return f"{obj.code[:4]}…"  # enough to match a user's report, not enough to join
