"""Root routes. REST paths sit at the root as the runbooks show them, with no trailing slash."""

from django.contrib import admin
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from chatsite.api.errors import handler404 as not_found

urlpatterns = [
    path("", include("ops.urls")),
    path("", include("chatsite.accounts.urls")),
    path("", include("dm.urls")),
    path("", include("groups.urls")),
    path("", include("presence.urls")),
    path("", include("status.urls")),
    # The staff dashboard, inside the admin's URL space and behind its log-in (ops/dashboard).
    path("admin/ops/dashboard/", include("ops.dashboard.urls")),
    # The remediations page, likewise (ops/remediations/views.py).
    path("admin/ops/remediations/", include("ops.remediations.urls")),
    path("admin/", admin.site.urls),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("schema/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="schema-docs"),
    # Last: any other path is a JSON 404 even with DJANGO_DEBUG=true (Django's debug 404 page is
    # HTML). The admin keeps its own HTML pages. Static files are served by WhiteNoise's
    # middleware before routing, so a /static/ path that reaches here is missing: JSON 404
    # too. csrf_exempt: a route that does not exist has no form to protect, and CsrfViewMiddleware
    # would answer an unsafe method with 403 before the 404.
    re_path(r"^(?!admin/).*$", csrf_exempt(not_found)),
]

handler400 = "chatsite.api.errors.handler400"
handler403 = "chatsite.api.errors.handler403"
handler404 = "chatsite.api.errors.handler404"
handler500 = "chatsite.api.errors.handler500"
