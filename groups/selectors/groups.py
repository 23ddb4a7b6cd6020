"""Reads for the group paths: a user's groups, and one group with its members and their devices."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from dm.models import Device
from groups.models import Group, Participant
from groups.selectors.members import require_member


def groups_for_user(user_id: int) -> list[Participant]:
    """The user's current participations (not banned), each with its group, newest first."""
    return list(
        Participant.objects.filter(user_id=user_id, is_banned=False)
        .select_related("group")
        .order_by("-joined_at", "-pk")
    )


@dataclass(frozen=True)
class MemberView:
    participant: Participant
    username: str
    devices: list[uuid.UUID]
    # (device id, Curve25519 identity key, Ed25519 signing key): public keys, so a member can
    # check a sender-key envelope's Olm sender without claiming a one-time prekey for it.
    device_keys: list[tuple[uuid.UUID, str, str]]


@dataclass(frozen=True)
class GroupDetail:
    group: Group
    role: str  # the caller's
    members: list[MemberView]


def member_views(group_id: Any, user_ids: list[int] | None = None) -> list[MemberView]:
    """Current members (by seniority) with their usernames and active device ids: two queries."""
    rows = Participant.objects.filter(group_id=group_id, is_banned=False).select_related("user")
    if user_ids is not None:
        rows = rows.filter(user_id__in=user_ids)
    participants = list(rows.order_by("joined_at", "pk"))
    devices: dict[int, list[tuple[uuid.UUID, str, str]]] = defaultdict(list)
    for uid, device_id, identity_key, signing_key in (
        Device.objects.filter(user_id__in=[p.user_id for p in participants], status=Device.Status.ACTIVE)
        .order_by("created_at", "device_id")
        .values_list("user_id", "device_id", "identity_key", "signing_key")
    ):
        devices[uid].append((device_id, identity_key, signing_key))
    return [
        MemberView(p, p.user.username, [d for d, _, _ in devices[p.user_id]], devices[p.user_id])
        for p in participants
    ]


def group_detail(*, group_id: Any, user_id: int) -> GroupDetail:
    """404 NOT_FOUND for no such group, 403 NOT_MEMBER for a non-member."""
    me = require_member(group_id=group_id, user_id=user_id)
    return GroupDetail(Group.objects.get(pk=group_id), me.role, member_views(group_id))


def group_for_member(*, group_id: Any, user_id: int) -> tuple[Group, str]:
    me = require_member(group_id=group_id, user_id=user_id)
    return Group.objects.get(pk=group_id), me.role
