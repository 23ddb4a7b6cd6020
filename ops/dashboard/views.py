"""The dashboard page: a thin adapter over ops.dashboard.selectors, inside the admin site.

Routed at /admin/ops/dashboard/ (ops/dashboard/urls.py) through `admin.site.admin_view`, so it has the
admin's own rules: staff only (anyone else is sent to the admin log-in), never cached.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse

from ops.dashboard import selectors


def dashboard(request: HttpRequest) -> TemplateResponse:
    context = {
        **admin.site.each_context(request),
        "title": "Operations dashboard",
        **selectors.dashboard(),
    }
    return TemplateResponse(request, "admin/ops/dashboard.html", context)


staff_dashboard = admin.site.admin_view(dashboard)
