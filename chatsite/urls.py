"""Root routes. REST paths sit at the root as the runbooks show them, with no trailing slash."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("", include("ops.urls")),
    path("", include("chatsite.accounts.urls")),
    path("", include("dm.urls")),
    path("admin/", admin.site.urls),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("schema/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="schema-docs"),
]

handler400 = "chatsite.api.errors.handler400"
handler403 = "chatsite.api.errors.handler403"
handler404 = "chatsite.api.errors.handler404"
handler500 = "chatsite.api.errors.handler500"
