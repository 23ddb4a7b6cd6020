"""Support staff's read-only view of groups, members and invites (search by id, title or a
member's username). No ciphertext and no full invite code is ever shown; remediations (promote an
owner, bans) are actions over the services, in the operators' issue."""

from django.contrib import admin, messages
from django.db.models import Count, Exists, F, OuterRef, Q

from chatsite.admin_actions import confirmation, log_changed, reason_of
from chatsite.admin_filters import unacknowledged_filter
from chatsite.admin_readonly import ReadOnlyModelAdmin
from chatsite.api.errors import ApiError
from groups.models import (
    Delivery,
    EpochChange,
    Group,
    GroupMessage,
    Invite,
    InviteRedemption,
    Participant,
    SenderKey,
    SenderKeyEnvelope,
)
from groups.services.remediations import group_owner_promote, group_owner_promote_plan

# --- Filters for the runbooks' questions (the staff dashboard links its integrity results here) --


class HasOwnerFilter(admin.SimpleListFilter):
    """Seed 000 "Find groups without owners": `?has_owner=no`."""

    title = "has owner"
    parameter_name = "has_owner"

    def lookups(self, request, model_admin):
        return (("yes", "Yes"), ("no", "No"))

    def queryset(self, request, queryset):
        owner = Participant.objects.filter(group=OuterRef("pk"), role=Participant.Role.OWNER)
        if self.value() == "yes":
            return queryset.filter(Exists(owner))
        if self.value() == "no":
            return queryset.filter(~Exists(owner))
        return queryset


class CapacityFilter(admin.SimpleListFilter):
    """Seed 000 "Check group capacity", counting non-banned participants as the runbook does (not
    the member_count column): over capacity (DATA CORRUPTION) or full."""

    title = "capacity"
    parameter_name = "capacity"

    def lookups(self, request, model_admin):
        return (("over", "Over capacity"), ("full", "Full"))

    def queryset(self, request, queryset):
        if self.value() not in ("over", "full"):
            return queryset
        queryset = queryset.annotate(n_members=Count("participants", filter=Q(participants__is_banned=False)))
        if self.value() == "over":
            return queryset.filter(n_members__gt=F("max_participants"))
        return queryset.filter(n_members__gte=F("max_participants"))


class InviteUsesFilter(admin.SimpleListFilter):
    """Seed 000 "Concurrent invite redemption": uses > max_uses is data corruption."""

    title = "uses"
    parameter_name = "uses"

    def lookups(self, request, model_admin):
        return (("over", "Over max uses"), ("used_up", "Used up"))

    def queryset(self, request, queryset):
        if self.value() == "over":
            return queryset.filter(max_uses__isnull=False, uses__gt=F("max_uses"))
        if self.value() == "used_up":
            return queryset.filter(max_uses__isnull=False, uses__gte=F("max_uses"))
        return queryset


# The public keys of a device shown by name in a list: never loaded (joined as `device`).
DEVICE_KEYS = ("device__identity_key", "device__signing_key")

StaleEnvelopeFilter = unacknowledged_filter(
    acked_field="acked_at",
    age_setting="INTEGRITY_SENDER_KEY_UNACKED_AFTER_S",
    doc='Sender-key envelopes not acknowledged; "stale": the integrity check sender_keys_unacked.',
)


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
    list_filter = (HasOwnerFilter, CapacityFilter)
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
    actions = ["promote_owner"]

    def has_remediate_permission(self, request) -> bool:
        # The page stays read-only (ReadOnlyModelAdmin); the remediation is for those who may
        # change groups.
        return request.user.has_perm("groups.change_group")

    @admin.action(
        description="Promote an owner (orphaned groups: the most senior admin)", permissions=["remediate"]
    )
    def promote_owner(self, request, queryset):
        return _promote(
            self, request, [(group.pk, None, group) for group in queryset], "promote_owner", queryset
        )


def _promote(modeladmin, request, targets, action: str, queryset):
    """Confirm, then run groups.services.remediations.group_owner_promote for each (group id,
    member or None, the object to log) target: the same service as `manage.py promote_group_owner`."""
    plans = []
    for group_id, user_id, _obj in targets:
        try:
            plan = group_owner_promote_plan(group_id=group_id, user_id=user_id)
            plans.append(f"group {group_id}: {plan.username} ({plan.previous_role}) becomes the owner")
        except ApiError as exc:
            plans.append(f"group {group_id}: skipped ({exc.detail})")
    page = confirmation(
        modeladmin,
        request,
        queryset,
        action=action,
        title="Promote an owner",
        consequence="; ".join(plans) + ".",
        ask_reason=True,
    )
    if page is not None:
        return page
    reason = reason_of(request)
    done, skipped = [], []
    for group_id, user_id, obj in targets:
        try:
            promotion = group_owner_promote(
                group_id=group_id, user_id=user_id, by=request.user, reason=reason
            )
            done.append((obj, promotion))
        except ApiError as exc:
            skipped.append(f"{group_id}: {exc.detail}")
    for obj, promotion in done:
        log_changed(modeladmin, request, [obj], f"Promoted {promotion.username} to owner: {reason}")
    modeladmin.message_user(request, f"Promoted {len(done)} owner(s).", messages.SUCCESS)
    if skipped:
        modeladmin.message_user(request, "Skipped " + "; ".join(skipped), messages.WARNING)
    return None


@admin.register(Participant)
class ParticipantAdmin(ReadOnlyModelAdmin):
    list_display = ("group", "user", "role", "is_banned", "joined_at")
    list_filter = ("role", "is_banned")
    search_fields = ("=group__id", "group__title", "user__username")
    list_select_related = ("group", "user")
    actions = ["promote_to_owner"]

    def has_remediate_permission(self, request) -> bool:
        return request.user.has_perm("groups.change_group")

    @admin.action(description="Make this member the owner of its orphaned group", permissions=["remediate"])
    def promote_to_owner(self, request, queryset):
        rows = list(queryset)
        return _promote(
            self, request, [(p.group_id, p.user_id, p) for p in rows], "promote_to_owner", queryset
        )


@admin.register(Invite)
class InviteAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "group", "code_hint", "uses", "max_uses", "expires_at", "created_at")
    # "=code": seed 000 looks an invite up by the code a user reports; only its hint is shown.
    search_fields = ("=group__id", "group__title", "=code")
    list_filter = (InviteUsesFilter,)
    fields = ("id", "group", "code_hint", "uses", "max_uses", "expires_at", "created_by", "created_at")
    readonly_fields = fields
    list_select_related = ("group",)

    @admin.display(description="code")
    def code_hint(self, obj) -> str:
        return f"{obj.code[:4]}…"  # enough to match a user's report, not enough to join


# --- The rest of the groups tables: read-only (they change only through the services), searchable
# by group id or title, and never with ciphertext (messages and sender-key envelopes).


@admin.register(GroupMessage)
class GroupMessageAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "group", "seq", "sender_user", "group_epoch", "client_message_id", "created_at")
    search_fields = ("=id", "=group__id", "group__title", "sender_user__username", "=client_message_id")
    list_select_related = ("group", "sender_user")
    fields = (
        "id",
        "group",
        "seq",
        "sender_user",
        "sender_device",
        "group_epoch",
        "proto",
        "sender_key_id",
        "client_message_id",
        "created_at",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).defer("ciphertext")


@admin.register(Delivery)
class GroupDeliveryAdmin(ReadOnlyModelAdmin):
    list_display = ("group", "device", "acked_seq", "delivered_at")
    search_fields = ("=group__id", "group__title", "=device__device_id")
    list_select_related = ("group", "device")
    fields = ("group", "device", "message", "acked_seq", "delivered_at")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).defer(*DEVICE_KEYS)


@admin.register(SenderKey)
class SenderKeyAdmin(ReadOnlyModelAdmin):
    list_display = ("group", "sender_user", "sender_device", "group_epoch", "sender_key_id", "rotated_at")
    search_fields = ("=group__id", "group__title", "sender_user__username", "=sender_device__device_id")
    list_select_related = ("group", "sender_user", "sender_device")
    fields = ("group", "sender_user", "sender_device", "group_epoch", "sender_key_id", "rotated_at")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).defer(*(f"sender_{column}" for column in DEVICE_KEYS))


@admin.register(SenderKeyEnvelope)
class SenderKeyEnvelopeAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "sender_key", "device", "recipient_user_id", "created_at", "acked_at")
    list_filter = (StaleEnvelopeFilter,)
    search_fields = ("=sender_key__group__id", "=device__device_id", "=recipient_user_id")
    list_select_related = ("sender_key", "device")
    fields = ("id", "sender_key", "device", "recipient_user_id", "message_type", "created_at", "acked_at")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).defer("ciphertext", *DEVICE_KEYS)


@admin.register(EpochChange)
class EpochChangeAdmin(ReadOnlyModelAdmin):
    list_display = ("group", "group_epoch", "kind", "user_id", "device_id", "created_at")
    list_filter = ("kind",)
    search_fields = ("=group__id", "group__title", "=user_id", "=device_id")
    list_select_related = ("group",)


@admin.register(InviteRedemption)
class InviteRedemptionAdmin(ReadOnlyModelAdmin):
    list_display = ("invite", "user", "redeemed_at")
    search_fields = ("=invite__group__id", "invite__group__title", "user__username")
    list_select_related = ("invite", "user")
