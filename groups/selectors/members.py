"""Reads about who is in a group and which devices they have."""

from __future__ import annotations

import uuid
from typing import Any

from chatsite.api.errors import ApiError
from dm.models import Device
from groups.models import Group, Participant


def group_or_404(group_id: Any) -> Group:
    group = Group.objects.filter(pk=group_id).first()
    if group is None:
        raise ApiError("NOT_FOUND", "No such group.")
    return group


def participant(*, group_id: Any, user_id: int) -> Participant | None:
    return Participant.objects.filter(group_id=group_id, user_id=user_id).first()


def require_member(*, group_id: Any, user_id: int) -> Participant:
    """The caller's participation: 404 NOT_FOUND for no such group, 403 NOT_MEMBER for anyone who
    is not a current (non-banned) member."""
    found = participant(group_id=group_id, user_id=user_id)
    if found is None or found.is_banned:
        group_or_404(group_id)
        raise ApiError("NOT_MEMBER", "You are not a member of this group.")
    return found


def member_user_ids(group_id: Any) -> list[int]:
    return list(
        Participant.objects.filter(group_id=group_id, is_banned=False).values_list("user_id", flat=True)
    )


def member_devices(group_id: Any) -> list[tuple[int, uuid.UUID]]:
    """(user id, device id) of every active device of every current member."""
    return list(
        Device.objects.filter(
            status=Device.Status.ACTIVE,
            user__group_participations__group_id=group_id,
            user__group_participations__is_banned=False,
        ).values_list("user_id", "device_id")
    )


def user_device_ids(user_id: int) -> list[uuid.UUID]:
    return list(
        Device.objects.filter(user_id=user_id, status=Device.Status.ACTIVE).values_list(
            "device_id", flat=True
        )
    )


def group_ids_of_user(user_id: int) -> list[uuid.UUID]:
    return list(
        Participant.objects.filter(user_id=user_id, is_banned=False).values_list("group_id", flat=True)
    )
