"""Operators' repairs of group membership: what seed 000 has an on-call engineer type as SQL.

- `group_owner_promote`: an orphaned group (no owner) gets one: the most senior admin by
  `joined_at` (else the most senior member), or a named current member ("Owner leaves group").
- `participants_dedupe`: duplicate (group, user) rows are removed keeping the most recent (which
  takes the highest role of its duplicates), and `uq_group_participants_group_user` is verified,
  and restored if it was missing ("Concurrent add/remove causing duplicates").
- `member_ban_everywhere`: ban one user from every group they are in (the abuse runbook's ban).

`manage.py` (ops/management/commands) and the admin (groups/admin.py, ops) call these same
functions; each writes one audit row (`audit_record`, REMEDIATION_APPLIED) in its transaction, so
the row exists exactly when the change does. Return values carry ids, roles and counts only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import connection, transaction

from chatsite.accounts.models import SecurityEvent, User
from chatsite.accounts.services import audit_record
from chatsite.api.errors import ApiError
from groups.models import EpochChange, Group, Participant
from groups.selectors.members import (
    BANNED,
    KEPT_SOLE_MEMBER,
    GroupBan,
    duplicate_participants,
    group_or_404,
    owner_heir,
)
from groups.services.epochs import Change, increment_group_epoch
from groups.services.members import ban_current, hand_over_ownership, lock_group

__all__ = [
    "UNIQUE_CONSTRAINT",
    "GroupBan",
    "group_owner_promote",
    "group_owner_promote_plan",
    "member_ban_everywhere",
    "participants_dedupe",
    "unique_constraint_present",
]

UNIQUE_CONSTRAINT = "uq_group_participants_group_user"


# --- Promote an owner -----------------------------------------------------------------------


@dataclass(frozen=True)
class OwnerPromotion:
    group_id: str
    user_id: int
    username: str
    previous_role: str
    joined_at: str


def _promotion_target(group_id: Any, user_id: int | None) -> Participant:
    if Participant.objects.filter(group_id=group_id, role=Participant.Role.OWNER).exists():
        raise ApiError("CONFLICT", "This group has an owner; only the owner can transfer ownership.")
    if user_id is None:
        heir = owner_heir(group_id=group_id)
        if heir is None:
            raise ApiError("OWNER_REQUIRED", "The group has no current member who could own it.")
        return heir
    heir = (
        Participant.objects.filter(group_id=group_id, user_id=user_id, is_banned=False)
        .select_related("user")
        .first()
    )
    if heir is None:
        raise ApiError("NOT_FOUND", "That user is not a current member of this group.")
    return heir


def _promotion(heir: Participant) -> OwnerPromotion:
    return OwnerPromotion(
        group_id=str(heir.group_id),
        user_id=heir.user_id,
        username=heir.user.username,
        previous_role=heir.role,
        joined_at=heir.joined_at.isoformat(),
    )


def group_owner_promote_plan(*, group_id: Any, user_id: int | None = None) -> OwnerPromotion:
    """Read-only: who `group_owner_promote` would make owner now, or the error it would raise."""
    group_or_404(group_id)
    return _promotion(_promotion_target(group_id, user_id))


@transaction.atomic
def group_owner_promote(
    *, group_id: Any, user_id: int | None = None, by: User | None = None, reason: str = ""
) -> OwnerPromotion:
    """Give an orphaned group an owner: `user_id` (a current member) or, without it, the heir
    `owner_heir` names (the most senior admin by joined_at, else the most senior member). 409
    CONFLICT if the group has an owner (that is `ownership_transfer`, by the owner), 404 if there
    is no such group or member, 409 OWNER_REQUIRED if nobody can own it.

    Safe under the group's row lock (lock_group), which every membership change takes first, so
    the choice is made on rows nobody can change before commit; `uq_group_participants_one_owner`
    would refuse a second owner whatever the race."""
    lock_group(group_id)
    heir = _promotion_target(group_id, user_id)
    promotion = _promotion(heir)
    heir.role = Participant.Role.OWNER
    heir.save(update_fields=["role"])
    audit_record(
        kind=SecurityEvent.Kind.REMEDIATION_APPLIED,
        by=by,
        reason=reason,
        user=heir.user,
        remediation="promote_group_owner",
        **asdict(promotion),
    )
    return promotion


# --- Duplicate participants -----------------------------------------------------------------


@dataclass
class Dedupe:
    removed: list[dict[str, Any]] = field(default_factory=list)  # the rows deleted
    # kept rows whose role changed to the highest of their duplicates: participant id, from, to
    roles: list[dict[str, Any]] = field(default_factory=list)
    # groups whose owner row was a duplicate of a banned kept row: group id -> new owner's user id
    # (None when nobody could own it; groups_without_owner then reports it)
    owners_promoted: dict[str, int | None] = field(default_factory=dict)
    member_counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # group: (before, after)
    constraint_was_present: bool = True
    constraint_restored: bool = False


def unique_constraint_present() -> bool:
    """Whether `uq_group_participants_group_user` is in force on group_participants (the
    runbook's "verify unique constraint exists"): an index by that name that is valid and
    unique. A name alone is not enough: a failed `CREATE UNIQUE INDEX CONCURRENTLY` leaves an
    INVALID index behind that enforces nothing."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = 'group_participants'::regclass AND c.relname = %s "
            "AND i.indisvalid AND i.indisunique AND i.indpred IS NULL",
            [UNIQUE_CONSTRAINT],
        )
        return cursor.fetchone() is not None


def _restore_constraint() -> None:
    """(Re)create the constraint, dropping first whatever invalid leftover holds its name."""
    constraint = next(c for c in Participant._meta.constraints if c.name == UNIQUE_CONSTRAINT)
    # ALTER TABLE refuses a table with deferred foreign-key checks still queued in this
    # transaction (rows it wrote, or a caller's): run them now.
    connection.check_constraints()
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE group_participants DROP CONSTRAINT IF EXISTS {UNIQUE_CONSTRAINT}")
        cursor.execute(f"DROP INDEX IF EXISTS {UNIQUE_CONSTRAINT}")
    with connection.schema_editor() as editor:
        editor.add_constraint(Participant, constraint)


@transaction.atomic
def participants_dedupe(*, by: User | None = None, reason: str = "") -> Dedupe:
    """Remove duplicate participants, keeping the most recent row (by `joined_at`, then id) of
    each (group, user), which takes the highest role of its duplicates (owner > admin > member:
    an owner row that was an older duplicate leaves its group an owner); a banned kept row stays
    a member, and its group passes to the heir (`owner_heir`). Then set each touched group's
    `member_count` to its non-banned rows; bump the epoch where a user's current membership ended
    (the kept row is banned); and make sure `uq_group_participants_group_user` exists, restoring
    it if it was dropped (or is invalid).

    While the constraint exists duplicates cannot, and nothing is locked. Without it: the rows of
    the groups concerned are locked first, in id order (the order membership changes take them),
    then `LOCK TABLE group_participants IN SHARE ROW EXCLUSIVE MODE` holds every other writer of
    the table until commit, so no duplicate can slip in before the constraint is back; restoring
    it (ALTER TABLE ... ADD CONSTRAINT, which builds the unique index) takes ACCESS EXCLUSIVE, so
    readers of group_participants wait too while the index builds (short for this table; this is
    a data-corruption repair). A duplicate that appeared in another group between the two locks
    is refused (409: run again)."""
    result = Dedupe(constraint_was_present=unique_constraint_present())
    if result.constraint_was_present:
        return result
    planned = duplicate_participants()
    group_ids = {d.kept.group_id for d in planned}
    locked = set(
        Group.objects.select_for_update().filter(pk__in=group_ids).order_by("pk").values_list("pk", flat=True)
    )
    with connection.cursor() as cursor:
        cursor.execute("LOCK TABLE group_participants IN SHARE ROW EXCLUSIVE MODE")
    duplicates = duplicate_participants()  # again, now that nobody else can write
    if any(d.kept.group_id not in locked for d in duplicates):
        raise ApiError("CONFLICT", "New duplicates appeared while cleaning up; run it again.")
    ended: list[tuple[Any, int]] = []
    for d in duplicates:
        kept, extra = d
        if kept.is_banned and any(not row.is_banned for row in extra):
            ended.append((kept.group_id, kept.user_id))
        result.removed += [
            {
                "participant_id": row.pk,
                "group_id": str(row.group_id),
                "user_id": row.user_id,
                "role": row.role,
                "is_banned": row.is_banned,
                "joined_at": row.joined_at.isoformat(),
                "kept_participant_id": kept.pk,
            }
            for row in extra
        ]
    Participant.objects.filter(pk__in=[r["participant_id"] for r in result.removed]).delete()
    # After the deletes: the owner row may have been a duplicate (uq_group_participants_one_owner).
    for d in duplicates:
        if d.kept_role != d.kept.role:
            result.roles.append({"participant_id": d.kept.pk, "from": d.kept.role, "to": d.kept_role})
            Participant.objects.filter(pk=d.kept.pk).update(role=d.kept_role)
    for d in duplicates:
        group_id = str(d.kept.group_id)
        if d.loses_owner and group_id not in result.owners_promoted:
            heir = owner_heir(group_id=d.kept.group_id)
            if heir is not None:
                Participant.objects.filter(pk=heir.pk).update(role=Participant.Role.OWNER)
            result.owners_promoted[group_id] = heir.user_id if heir else None
    for group in Group.objects.filter(pk__in=locked).order_by("pk"):
        count = Participant.objects.filter(group_id=group.pk, is_banned=False).count()
        if count != group.member_count:
            result.member_counts[str(group.pk)] = (group.member_count, count)
            Group.objects.filter(pk=group.pk).update(member_count=count)
    for group_id, user_id in ended:
        increment_group_epoch(group_id=group_id, changes=[Change(EpochChange.Kind.MEMBER_REMOVED, user_id)])
    _restore_constraint()
    result.constraint_restored = True
    audit_record(
        kind=SecurityEvent.Kind.REMEDIATION_APPLIED,
        by=by,
        reason=reason,
        remediation="dedupe_participants",
        removed=result.removed,
        roles=result.roles,
        owners_promoted=result.owners_promoted,
        member_counts={k: list(v) for k, v in result.member_counts.items()},
        constraint_restored=True,
    )
    return result


# --- Ban from every group -------------------------------------------------------------------


def member_ban_everywhere(*, user_id: int) -> list[GroupBan]:
    """Ban `user_id` from every group they are a current member of, in the caller's transaction:
    each is a ban as `member_ban` makes it (`ban_current`: place released, epoch moved), without
    an acting admin. An owner first hands the group to its heir (`hand_over_ownership`, the rule
    owner_succession uses); an owner with nobody else in the group is kept (banning them would
    leave a group nobody can run), and said so. `member_ban_everywhere_plan` (groups.selectors)
    says the same without changing anything.

    Safe under each group's row lock, taken in id order as owner_succession does, so this cannot
    deadlock with a succession or another ban; rows are read after the lock."""
    bans: list[GroupBan] = []
    with transaction.atomic():
        group_ids = Participant.objects.filter(user_id=user_id, is_banned=False).values_list(
            "group_id", flat=True
        )
        for group_id in sorted(set(group_ids), key=str):
            group = Group.objects.select_for_update().filter(pk=group_id).first()
            me = Participant.objects.filter(group_id=group_id, user_id=user_id, is_banned=False).first()
            if group is None or me is None:
                continue
            previous = me.role
            if me.role == Participant.Role.OWNER and hand_over_ownership(me) is None:
                bans.append(GroupBan(str(group_id), group.title, previous, KEPT_SOLE_MEMBER))
                continue
            ban_current(me)
            bans.append(GroupBan(str(group_id), group.title, previous, BANNED))
    return bans
