"""Probe routes at the root, no trailing slash, exactly as seed 003 lists them.

ops.middleware.ProbeMiddleware answers these same paths before any other middleware runs.
"""

from django.urls import path

from ops import views

urlpatterns = [
    path("health", views.health_view, name="health"),
    path("health/database", views.health_database, name="health-database"),
    path("ready", views.ready, name="ready"),
    path("live", views.live, name="live"),
    path("metrics", views.metrics, name="metrics"),
]
