"""The ban action on the Users page.

chatsite.accounts cannot import ops or groups (the layering contracts), yet a ban reaches into
groups. So ops, which may import everything, extends the registered User admin: it subclasses
chatsite.accounts.admin.UserAdmin (keeping every column, filter and action it has) with two
actions over ops.remediations.bans.user_ban, and registers that in its place. Imported from
OpsConfig.ready(): `ops` comes after `chatsite.accounts` and `django.contrib.admin`, and importing
chatsite.accounts.admin here registers the base first whatever the order.
"""

from __future__ import annotations

from django.contrib import admin, messages

from chatsite.accounts.admin import UserAdmin
from chatsite.accounts.models import User
from chatsite.admin_actions import confirmation, log_changed, reason_of
from ops.remediations.bans import user_ban, user_ban_plan


def _consequence(users, *, groups: bool) -> str:
    parts = []
    for user in users:
        plan = user_ban_plan(user=user, groups=groups)
        text = f"{plan.username}: {plan.live_sessions} live session(s) revoked"
        if groups:
            banned = sum(g.outcome == "banned" for g in plan.groups)
            kept = len(plan.groups) - banned
            text += f", banned from {banned} group(s)" + (f" ({kept} kept: sole member)" if kept else "")
        parts.append(text)
    return (
        "Each account is disabled, every session ends and every socket is disconnected"
        + (", and the user is banned from every group they are in" if groups else "")
        + ". "
        + "; ".join(parts)
        + "."
    )


class RemediatingUserAdmin(UserAdmin):
    actions = [*UserAdmin.actions, "ban_users", "ban_users_from_groups"]

    def _ban(self, request, queryset, *, action: str, groups: bool):
        users = list(queryset)
        page = confirmation(
            self,
            request,
            queryset,
            action=action,
            title="Ban users" + (" and ban them from every group" if groups else ""),
            consequence=_consequence(users, groups=groups),
            ask_reason=True,
        )
        if page is not None:
            return page
        reason = reason_of(request)
        for user in users:
            user_ban(user=user, by=request.user, reason=reason, groups=groups)
        log_changed(self, request, users, f"Banned{' from every group' if groups else ''}: {reason}")
        self.message_user(request, f"Banned {len(users)} user(s).", messages.SUCCESS)
        return None

    @admin.action(description="Ban users (disable, end sessions, disconnect)", permissions=["change"])
    def ban_users(self, request, queryset):
        return self._ban(request, queryset, action="ban_users", groups=False)

    @admin.action(description="Ban users, and ban them from every group", permissions=["change"])
    def ban_users_from_groups(self, request, queryset):
        return self._ban(request, queryset, action="ban_users_from_groups", groups=True)


def register() -> None:
    if isinstance(admin.site._registry.get(User), RemediatingUserAdmin):
        return
    admin.site.unregister(User)
    admin.site.register(User, RemediatingUserAdmin)
