"""/admin/ops/dashboard/, included from chatsite/urls.py ahead of the admin's own routes (not
from ops/urls.py, whose routes are the probe paths ProbeMiddleware answers)."""

from django.urls import path

from ops.dashboard.views import staff_dashboard

urlpatterns = [path("", staff_dashboard, name="ops-dashboard")]
