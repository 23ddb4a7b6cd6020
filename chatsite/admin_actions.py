"""What every destructive admin action shares: a confirmation page (with a required reason where
the service records one), and a "Recent actions" entry (Django's LogEntry) per changed object, so
what support staff did is in the admin's own history as well as in security_events."""

from __future__ import annotations

from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.template.response import TemplateResponse


def confirmation(
    modeladmin,
    request,
    queryset,
    *,
    action: str,
    title: str,
    consequence: str,
    ask_reason: bool = False,
    details: list[str] | None = None,
) -> TemplateResponse | None:
    """The page to show before a destructive action runs, or None once it is confirmed (and, with
    `ask_reason`, a reason given: read it with `reason_of(request)`). `details`: lines shown
    after the objects (what exactly will change), never carried as inputs."""
    confirmed = request.POST.get("confirm") == "yes"
    reason = reason_of(request)
    if confirmed and (reason or not ask_reason):
        return None
    return TemplateResponse(
        request,
        "admin/chatsite/confirm_action.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": title,
            "consequence": consequence,
            "objects": queryset,
            "action": action,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "opts": modeladmin.model._meta,
            "ask_reason": ask_reason,
            "reason": reason,
            "reason_missing": confirmed and ask_reason and not reason,
            "lines": details or [],
        },
    )


def reason_of(request) -> str:
    return request.POST.get("reason", "").strip()[:200]


def log_changed(modeladmin, request, objects, message: str) -> None:
    """One "Recent actions" entry per object the action changed."""
    for obj in objects:
        modeladmin.log_change(request, obj, message)
