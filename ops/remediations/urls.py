"""/admin/ops/remediations/ (included by chatsite/urls.py before admin.site.urls, as a string so
chatsite imports no ops module)."""

from django.urls import path

from ops.remediations.views import remediations_page

urlpatterns = [path("", remediations_page, name="ops-remediations")]
