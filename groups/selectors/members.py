"""Reads about who is in a group and which devices they have."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple

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


def owner_heir(*, group_id: Any, excluding: int | None = None) -> Participant | None:
    """Who inherits (or, when orphaned, takes) a group: the most senior admin by `joined_at`,
    else the most senior member, preferring accounts that are not disabled; never a banned
    participant (seed 000, "Owner leaves group": "Find most senior admin (by joined_at)")."""
    from django.db.models import Case, IntegerField, Value, When

    rank = Case(
        When(role=Participant.Role.ADMIN, then=Value(0)), default=Value(1), output_field=IntegerField()
    )
    candidates = Participant.objects.filter(group_id=group_id, is_banned=False).exclude(
        role=Participant.Role.OWNER
    )
    if excluding is not None:
        candidates = candidates.exclude(user_id=excluding)
    return (
        candidates.select_related("user")
        .annotate(rank=rank)
        .order_by("user__disabled", "rank", "joined_at", "pk")
        .first()
    )


def orphaned_group_ids(*, limit: int = 1000) -> list[uuid.UUID]:
    """Groups without an owner (seed 000's "Find groups without owners")."""
    return list(
        Group.objects.exclude(participants__role=Participant.Role.OWNER)
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )


ROLE_RANK = {Participant.Role.OWNER: 3, Participant.Role.ADMIN: 2, Participant.Role.MEMBER: 1}


class Duplicates(NamedTuple):
    """One duplicated (group, user): the row kept (the most recent by `joined_at`, then id) and
    the rows removed. Unpacks as (kept, extra)."""

    kept: Participant
    extra: list[Participant]

    @property
    def kept_role(self) -> str:
        """The role the kept row ends with: the highest of all the duplicates (owner > admin >
        member), so a group whose owner row is an older duplicate keeps its owner. A banned kept
        row stays a member (`ck_group_participants_banned_member`); its group's ownership then
        passes to the heir (`owner_heir`)."""
        if self.kept.is_banned:
            return Participant.Role.MEMBER
        return max((self.kept, *self.extra), key=lambda p: ROLE_RANK[p.role]).role

    @property
    def loses_owner(self) -> bool:
        """The owner row goes and the kept row cannot own (it is banned): the heir takes over."""
        return self.kept.is_banned and any(p.role == Participant.Role.OWNER for p in self.extra)


def duplicate_participants() -> list[Duplicates]:
    """Seed 000's "Check for duplicate participants" (`GROUP BY group_id, user_id HAVING COUNT(*)
    > 1`) in one query: for each duplicated (group, user), the row to keep (the most recent by
    `joined_at`, then id) and the rows to remove, ordered by group and user. Empty while
    uq_group_participants_group_user exists. One pass over group_participants (window functions
    over the (group_id, user_id) partition)."""
    rows = Participant.objects.raw(
        "SELECT * FROM ("
        " SELECT gp.*,"
        " row_number() OVER (PARTITION BY group_id, user_id ORDER BY joined_at DESC, id DESC) AS rank,"
        " count(*) OVER (PARTITION BY group_id, user_id) AS copies"
        " FROM group_participants gp"
        ") AS d WHERE copies > 1 ORDER BY group_id, user_id, rank"
    )
    out: list[Duplicates] = []
    for row in rows:
        if row.rank == 1:
            out.append(Duplicates(row, []))
        else:
            out[-1].extra.append(row)
    return out


@dataclass(frozen=True)
class GroupBan:
    """What banning a user from every group does to one group."""

    group_id: str
    title: str
    previous_role: str
    outcome: str  # BANNED, or KEPT_SOLE_MEMBER (an owner with nobody to inherit)


BANNED = "banned"
KEPT_SOLE_MEMBER = "kept: sole member"


def member_ban_everywhere_plan(*, user_id: int) -> list[GroupBan]:
    """Read-only, one query: what `member_ban_everywhere` would do now in each group `user_id` is
    a current member of, by group id. A group they own passes to its heir and they are banned,
    unless nobody else could own it (no other non-banned participant: `owner_heir` would find
    none): then they are kept."""
    from django.db.models import Exists, OuterRef

    others = Participant.objects.filter(group_id=OuterRef("group_id"), is_banned=False).exclude(
        user_id=user_id
    )
    rows = (
        Participant.objects.filter(user_id=user_id, is_banned=False)
        .annotate(has_heir=Exists(others))
        .order_by("group_id")
        .values_list("group_id", "group__title", "role", "has_heir")
    )
    return [
        GroupBan(
            str(group_id),
            title,
            role,
            KEPT_SOLE_MEMBER if role == Participant.Role.OWNER and not has_heir else BANNED,
        )
        for group_id, title, role, has_heir in rows
    ]
