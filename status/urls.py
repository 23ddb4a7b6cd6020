"""Status paths (docs/status.md)."""

from status.views import posts

urlpatterns = [*posts.urlpatterns]
