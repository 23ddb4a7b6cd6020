"""Presence paths (docs/presence.md)."""

from presence.views import urlpatterns  # noqa: F401
