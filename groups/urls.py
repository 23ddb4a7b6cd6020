"""Group paths (docs/groups.md). Membership, roles and invites in views/groups.py; sender keys,
messages and metrics in views/messages.py."""

from groups.views import groups, messages

urlpatterns = [
    *groups.urlpatterns,
    *messages.urlpatterns,
]
