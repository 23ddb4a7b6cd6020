"""A group's own settings: its title."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from groups.models import Group
from groups.services.members import _actor, _clean_title, _require_admin, lock_group


@transaction.atomic
def group_rename(*, actor_id: int, group_id: Any, title: str) -> Group:
    """An admin or the owner renames the group. Safe under the group's row lock (lock_group): the
    actor's role is read after it. No epoch bump (membership is unchanged)."""
    group = lock_group(group_id)
    _require_admin(_actor(group_id, actor_id))
    group.title = _clean_title(title)
    group.updated_at = timezone.now()
    group.save(update_fields=["title", "updated_at"])
    return group
