"""Support staff's view of accounts. Actions call the same services as the API and manage.py."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from chatsite.accounts import services
from chatsite.accounts.models import Block, Contact, SecurityEvent, Session, User
from chatsite.admin_actions import confirmation, log_changed, reason_of
from chatsite.api.errors import ApiError
from chatsite.api.request import client_ip


class ThrottledAdminLoginForm(AdminAuthenticationForm):
    """`/admin/login/` through the same log-in service as `POST /auth/login`: one throttling
    policy and one security_events trail. A refused attempt is the login page again (HTTP 200)
    with the reason and the wait as the form's error."""

    def clean(self):
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is not None and password:
            try:
                self.user_cache = services.login_authenticate(
                    username=username, password=password, ip=client_ip(self.request), channel="admin"
                )
            except ApiError as exc:
                if exc.code == "INVALID_CREDENTIALS":
                    raise self.get_invalid_login_error() from exc
                if exc.code == "RATE_LIMITED":
                    wait = exc.extra["retry_in_seconds"]
                    raise forms.ValidationError(
                        f"Too many failed log-ins; try again in {wait} seconds.", code="rate_limited"
                    ) from exc
                raise forms.ValidationError(exc.detail, code=exc.code.lower()) from exc
            self.confirm_login_allowed(self.user_cache)
        return self.cleaned_data


admin.site.login_form = ThrottledAdminLoginForm


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ("account_id", "username", "disabled", "is_staff", "date_joined", "last_login")
    list_filter = ("disabled", "is_staff", "is_superuser")
    search_fields = ("username", "=account_id")
    fieldsets = (*DjangoUserAdmin.fieldsets, ("Chat", {"fields": ("disabled",)}))
    readonly_fields = ("disabled",)  # changed only through the actions, which end sessions too
    actions = ["disable_accounts", "enable_accounts", "revoke_all_sessions"]

    @admin.action(description="Disable accounts (end sessions, close websockets)", permissions=["change"])
    def disable_accounts(self, request, queryset):
        page = confirmation(
            self,
            request,
            queryset,
            action="disable_accounts",
            title="Disable accounts",
            consequence="They will be logged out everywhere and cannot log in again until enabled.",
            ask_reason=True,
        )
        if page is not None:
            return page
        reason = reason_of(request)
        users = list(queryset)
        for user in users:
            services.account_disable(user=user, by=request.user, reason=reason)
        log_changed(self, request, users, f"Disabled the account: {reason}")
        self.message_user(request, f"Disabled {len(users)} account(s).", messages.SUCCESS)
        return None

    @admin.action(description="Enable accounts", permissions=["change"])
    def enable_accounts(self, request, queryset):
        users = list(queryset)
        for user in users:
            services.account_enable(user=user, by=request.user)
        log_changed(self, request, users, "Enabled the account")
        self.message_user(request, f"Enabled {len(users)} account(s).", messages.SUCCESS)

    @admin.action(description="Revoke all sessions (force disconnect)", permissions=["change"])
    def revoke_all_sessions(self, request, queryset):
        page = confirmation(
            self,
            request,
            queryset,
            action="revoke_all_sessions",
            title="Revoke all sessions",
            consequence="Every session of these users ends and their websockets close.",
        )
        if page is not None:
            return page
        users = list(queryset)
        total = sum(services.sessions_revoke_all(user=user) for user in users)
        log_changed(self, request, users, "Revoked all sessions")
        self.message_user(request, f"Revoked {total} session(s).", messages.SUCCESS)
        return None


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    # The token hash is never shown: it is a credential.
    list_display = (
        "id",
        "user",
        "token_prefix",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "ip",
        "device_id",
    )
    list_filter = ("revoked_at",)
    search_fields = ("user__username", "=id", "=device_id")
    fields = (
        "id",
        "user",
        "token_prefix",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "ip",
        "user_agent",
        "device_id",
    )
    readonly_fields = fields
    actions = ["revoke_sessions"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # deleting skips the stream close and the audit row: revoke instead

    @admin.action(description="Revoke selected sessions (force disconnect)", permissions=["change"])
    def revoke_sessions(self, request, queryset):
        page = confirmation(
            self,
            request,
            queryset,
            action="revoke_sessions",
            title="Revoke sessions",
            consequence="These sessions end at once and their websockets close; the users log in again.",
        )
        if page is not None:
            return page
        sessions = list(queryset.filter(revoked_at__isnull=True).select_related("user"))
        for session in sessions:
            services.session_revoke(user=session.user, session_id=session.pk, by=request.user)
        log_changed(self, request, sessions, "Revoked the session")
        self.message_user(request, f"Revoked {len(sessions)} session(s).", messages.SUCCESS)
        return None


@admin.register(SecurityEvent)
class SecurityEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "kind", "user", "ip", "flagged")
    list_filter = ("kind", "flagged")
    search_fields = ("user__username", "ip")
    readonly_fields = ("created_at", "kind", "user", "ip", "flagged", "data")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # an audit trail that staff can delete is no audit trail


admin.site.register(
    Contact,
    list_display=("owner", "contact", "created_at"),
    raw_id_fields=("owner", "contact"),
    search_fields=("owner__username", "contact__username"),
)
admin.site.register(
    Block,
    list_display=("blocker", "blocked", "created_at"),
    raw_id_fields=("blocker", "blocked"),
    search_fields=("blocker__username", "blocked__username"),
)
