"""Membership: create, admit (add / join / invite), and the rules of roles and ownership.

Capacity is exact under concurrency and across processes: `_admit` moves `groups.member_count`
with one UPDATE ... WHERE member_count < max_participants, which takes the group's row lock, and
`ck_groups_member_count` refuses any count past the limit whatever the race. The participant row
is inserted in the same transaction, after the lock, so a second admission of the same user waits
for the first and then finds the row (`uq_group_participants_group_user` backs it).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from chatsite.api.errors import ApiError
from groups.models import EpochChange, Group, Participant
from groups.selectors.members import owner_heir
from groups.services.epochs import Change, increment_group_epoch


def _clean_title(title: Any) -> str:
    title = title.strip() if isinstance(title, str) else ""
    if not title or len(title) > 128:
        raise ApiError(
            "VALIDATION_ERROR", "title must be 1-128 characters.", fields={"title": "1-128 characters"}
        )
    return title


@transaction.atomic
def group_create(*, user_id: int, title: str) -> Group:
    """A new group whose creator is its owner (and first member)."""
    now = timezone.now()
    group = Group.objects.create(
        title=_clean_title(title),
        max_participants=settings.GROUP_MAX_PARTICIPANTS,
        member_count=1,
        created_by_id=user_id,
        created_at=now,
        updated_at=now,
    )
    Participant.objects.create(group=group, user_id=user_id, role=Participant.Role.OWNER, joined_at=now)
    return group


def _admit(*, group_id: Any, user_id: int, role: str = Participant.Role.MEMBER) -> Participant:
    """Make `user_id` a member, inside the caller's transaction: GROUP_FULL, BANNED, or the
    existing participation if already a member (idempotent). Bumps the epoch."""
    if not connection.in_atomic_block:
        raise RuntimeError("_admit must run inside a transaction")
    existing = Participant.objects.filter(group_id=group_id, user_id=user_id).first()
    if existing is not None:
        if existing.is_banned:
            raise ApiError("BANNED", "You are banned from this group.")
        return existing
    with connection.cursor() as cursor:
        # The group's row lock: admissions, removals and sends to this group queue here.
        cursor.execute(
            "UPDATE groups SET member_count = member_count + 1 "
            "WHERE id = %s AND member_count < max_participants RETURNING last_seq",
            [group_id],
        )
        row = cursor.fetchone()
    if row is None:
        if not Group.objects.filter(pk=group_id).exists():
            raise ApiError("NOT_FOUND", "No such group.")
        # Someone admitted meanwhile may be this very user (we waited on the row lock): look again.
        again = Participant.objects.filter(group_id=group_id, user_id=user_id).first()
        if again is not None and not again.is_banned:
            return again
        raise ApiError("GROUP_FULL", f"The group is at its member limit ({settings.GROUP_MAX_PARTICIPANTS}).")
    again = Participant.objects.filter(group_id=group_id, user_id=user_id).first()
    if again is not None:
        # Admitted (or banned) by a transaction that committed while we waited for the lock:
        # give the place back.
        with connection.cursor() as cursor:
            cursor.execute("UPDATE groups SET member_count = member_count - 1 WHERE id = %s", [group_id])
        if again.is_banned:
            raise ApiError("BANNED", "You are banned from this group.")
        return again
    member = Participant.objects.create(
        group_id=group_id, user_id=user_id, role=role, joined_at=timezone.now(), joined_seq=row[0]
    )
    increment_group_epoch(group_id=group_id, changes=[Change(EpochChange.Kind.MEMBER_ADDED, user_id)])
    return member


# --- Roles, removals, bans, ownership -----------------------------------------------------------
#
# Every use case below is one transaction that starts by locking the group's row
# (`SELECT ... FROM groups WHERE id = ... FOR UPDATE`, `lock_group`). Admissions (`_admit`'s
# UPDATE), removals, role changes and sends take that same row lock, so within one group they run
# one after another: the actor's role and the target's participation are read after the lock and
# cannot change before commit. A transaction that touches several groups (owner_succession) locks
# them in id order, so two such transactions cannot deadlock on each other.

_RANK = {Participant.Role.OWNER: 3, Participant.Role.ADMIN: 2, Participant.Role.MEMBER: 1}


def lock_group(group_id: Any) -> Group:
    """The group's row, locked until commit (404 NOT_FOUND if there is no such group)."""
    group = Group.objects.select_for_update().filter(pk=group_id).first()
    if group is None:
        raise ApiError("NOT_FOUND", "No such group.")
    return group


def _member_of(group_id: Any, user_id: int) -> Participant | None:
    found = Participant.objects.filter(group_id=group_id, user_id=user_id).first()
    return None if found is None or found.is_banned else found


def _actor(group_id: Any, user_id: int) -> Participant:
    """The caller's current participation (after the group lock), or 403 NOT_MEMBER."""
    actor = _member_of(group_id, user_id)
    if actor is None:
        raise ApiError("NOT_MEMBER", "You are not a member of this group.")
    return actor


def _require_admin(actor: Participant) -> None:
    if _RANK[actor.role] < _RANK[Participant.Role.ADMIN]:
        raise ApiError("PERMISSION_DENIED", "Only the group's admins and its owner may do this.")


def _require_owner(actor: Participant) -> None:
    if actor.role != Participant.Role.OWNER:
        raise ApiError("PERMISSION_DENIED", "Only the group's owner may do this.")


def _require_outranks(actor: Participant, target: Participant) -> None:
    """Admins act on members only; the owner on admins and members; nobody on the owner."""
    if target.role == Participant.Role.OWNER:
        raise ApiError("PERMISSION_DENIED", "Nobody can remove or ban the group's owner.")
    if _RANK[actor.role] <= _RANK[target.role]:
        raise ApiError("PERMISSION_DENIED", "Admins can act on members only; the owner on admins.")


def _target(group_id: Any, user_id: int) -> Participant:
    target = _member_of(group_id, user_id)
    if target is None:
        raise ApiError("NOT_FOUND", "That user is not a member of this group.")
    return target


def _release_place(group_id: Any) -> None:
    """One member fewer, inside the caller's transaction (which holds the group's row lock)."""
    with connection.cursor() as cursor:
        cursor.execute("UPDATE groups SET member_count = member_count - 1 WHERE id = %s", [group_id])


def _drop(participant: Participant) -> None:
    """Delete a current member's participation: place released, epoch moved (MEMBER_REMOVED)."""
    Participant.objects.filter(pk=participant.pk).delete()
    _release_place(participant.group_id)
    increment_group_epoch(
        group_id=participant.group_id,
        changes=[Change(EpochChange.Kind.MEMBER_REMOVED, participant.user_id)],
    )


@transaction.atomic
def member_add(*, actor_id: int, group_id: Any, user_id: int) -> tuple[Participant, bool]:
    """An admin or the owner adds `user_id` as a member: (participation, created). Adding a current
    member is idempotent (created False); a banned user is 403 BANNED; a full group 409 GROUP_FULL.

    Safe under the group's row lock (lock_group), taken before the existence check; `_admit`'s
    capacity UPDATE then runs under the lock this transaction already holds."""
    from chatsite.accounts.models import User

    lock_group(group_id)
    _require_admin(_actor(group_id, actor_id))
    if not User.objects.filter(pk=user_id, is_active=True, disabled=False).exists():
        raise ApiError("NOT_FOUND", "No such user.")
    existing = Participant.objects.filter(group_id=group_id, user_id=user_id).first()
    if existing is not None:
        if existing.is_banned:
            raise ApiError("BANNED", "That user is banned from this group.")
        return existing, False
    return _admit(group_id=group_id, user_id=user_id), True


@transaction.atomic
def member_remove(*, actor_id: int, group_id: Any, user_id: int) -> None:
    """An admin removes a member, the owner an admin or a member; nobody removes the owner.
    Removing yourself is leaving (member_leave's rules). Safe under the group's row lock."""
    if user_id == actor_id:
        _leave_locked(group_id=group_id, user_id=user_id)
        return
    lock_group(group_id)
    actor = _actor(group_id, actor_id)
    _require_admin(actor)
    target = _target(group_id, user_id)
    _require_outranks(actor, target)
    _drop(target)


@transaction.atomic
def member_ban(*, actor_id: int, group_id: Any, user_id: int) -> Participant:
    """Ban `user_id`: a member is removed (place released, epoch bump MEMBER_REMOVED) and kept as a
    banned row (role member, banned_at); a non-member gets a banned row so no invite or add can
    admit them (no epoch bump: who reads the group did not change). Idempotent for a banned user.
    Same role rules as removal. Safe under the group's row lock."""
    from chatsite.accounts.models import User

    lock_group(group_id)
    actor = _actor(group_id, actor_id)
    _require_admin(actor)
    if user_id == actor_id:
        raise ApiError("BAD_REQUEST", "You cannot ban yourself.")
    now = timezone.now()
    existing = Participant.objects.filter(group_id=group_id, user_id=user_id).first()
    if existing is None:
        if not User.objects.filter(pk=user_id).exists():
            raise ApiError("NOT_FOUND", "No such user.")
        return Participant.objects.create(
            group_id=group_id, user_id=user_id, role=Participant.Role.MEMBER, is_banned=True, banned_at=now
        )
    if existing.is_banned:
        return existing
    _require_outranks(actor, existing)
    ban_current(existing)
    return existing


def ban_current(participant: Participant) -> None:
    """Ban a current, non-owner member inside the caller's transaction (which holds the group's
    row lock): kept as a banned row (role member, banned_at), place released, epoch moved. Shared
    with the remediations' ban from every group (groups.services.remediations)."""
    participant.is_banned = True
    participant.role = Participant.Role.MEMBER
    participant.banned_at = timezone.now()
    participant.save(update_fields=["is_banned", "role", "banned_at"])
    _release_place(participant.group_id)
    increment_group_epoch(
        group_id=participant.group_id,
        changes=[Change(EpochChange.Kind.MEMBER_REMOVED, participant.user_id)],
    )


def _leave_locked(*, group_id: Any, user_id: int) -> None:
    lock_group(group_id)
    me = _actor(group_id, user_id)
    if me.role == Participant.Role.OWNER:
        raise ApiError("OWNER_REQUIRED", "The owner cannot leave; transfer ownership first.")
    _drop(me)


@transaction.atomic
def member_leave(*, user_id: int, group_id: Any) -> None:
    """The caller leaves; the owner cannot (409 OWNER_REQUIRED: transfer ownership first).
    Safe under the group's row lock."""
    _leave_locked(group_id=group_id, user_id=user_id)


@transaction.atomic
def member_set_role(*, actor_id: int, group_id: Any, user_id: int, role: str) -> Participant:
    """The owner makes a member an admin or an admin a member. The owner's own role changes only
    by ownership_transfer (409 OWNER_REQUIRED). No epoch bump: who reads the group is unchanged.
    Safe under the group's row lock."""
    if role not in (Participant.Role.ADMIN, Participant.Role.MEMBER):
        raise ApiError(
            "VALIDATION_ERROR", "role must be admin or member.", errors={"role": ["Must be admin or member."]}
        )
    lock_group(group_id)
    _require_owner(_actor(group_id, actor_id))
    target = _target(group_id, user_id)
    if target.role == Participant.Role.OWNER:
        raise ApiError("OWNER_REQUIRED", "The owner's role changes only by transferring ownership.")
    if target.role != role:
        target.role = role
        target.save(update_fields=["role"])
    return target


@transaction.atomic
def ownership_transfer(*, actor_id: int, group_id: Any, user_id: int) -> Participant:
    """The owner hands the group to a current member and becomes an admin. Returns the old owner's
    participation. Safe under the group's row lock; `uq_group_participants_one_owner` makes two
    owners impossible (the old owner is demoted before the new one is promoted)."""
    lock_group(group_id)
    me = _actor(group_id, actor_id)
    _require_owner(me)
    if user_id == actor_id:
        raise ApiError("BAD_REQUEST", "You already own this group.")
    target = _target(group_id, user_id)
    me.role = Participant.Role.ADMIN
    me.save(update_fields=["role"])
    target.role = Participant.Role.OWNER
    target.save(update_fields=["role"])
    return me


def hand_over_ownership(owner: Participant) -> Participant | None:
    """The one succession rule, inside the caller's transaction (which holds the group's row
    lock): the owner's heir (groups.selectors.members.owner_heir: the most senior admin by
    joined_at, else the most senior member, never the owner) becomes owner and `owner` a member.
    Returns the heir, or None when nobody else can own the group (nothing changes then). The
    owner is demoted before the heir is promoted: `uq_group_participants_one_owner`."""
    heir = owner_heir(group_id=owner.group_id, excluding=owner.user_id)
    if heir is None:
        return None
    owner.role = Participant.Role.MEMBER
    owner.save(update_fields=["role"])
    heir.role = Participant.Role.OWNER
    heir.save(update_fields=["role"])
    return heir


def owner_succession(*, user_id: int, leaving: bool = False) -> None:
    """Every group `user_id` owns gets a new owner (the most senior admin by joined_at, else the
    most senior member) in the caller's transaction, or a new one.

    - leaving=False (account disabled): the old owner stays, demoted to member (a disabled,
      possibly compromised account keeps no powers); a group with no one else keeps its owner.
    - leaving=True (account deleted): every participation of the user is removed as a removal
      would be (place released, epoch bump MEMBER_REMOVED; a banned row is simply deleted), and a
      group left with no current member is deleted.

    Safe under the row lock of each group, taken in id order (so two successions cannot deadlock),
    before its participants are read."""
    with transaction.atomic():
        rows = Participant.objects.filter(user_id=user_id)
        if not leaving:
            rows = rows.filter(role=Participant.Role.OWNER)
        for group_id in sorted(set(rows.values_list("group_id", flat=True)), key=str):
            if not Group.objects.select_for_update().filter(pk=group_id).exists():
                continue
            me = Participant.objects.filter(group_id=group_id, user_id=user_id).first()
            if me is None:
                continue
            if me.role == Participant.Role.OWNER and hand_over_ownership(me) is None:
                if leaving:
                    Group.objects.filter(pk=group_id).delete()
                continue
            if leaving:
                if me.is_banned:
                    Participant.objects.filter(pk=me.pk).delete()
                else:
                    _drop(me)
