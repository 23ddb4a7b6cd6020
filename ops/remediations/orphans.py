"""Clear orphaned rows (seed 000 §9 "Data Integrity Issues": "Clean up orphaned records"): rows
whose parent is gone, which only manual SQL, a restore or disabled triggers can leave behind
(every one of these tables has a foreign key to its parent).

The rows are found with the integrity registry's query for the kind (ops/integrity/registry.py,
`orphaned_<kind>`: the runbook's LEFT JOIN ... WHERE parent IS NULL), the one detection query
for both the check and its remediation. What is changed is exactly what was planned (the ids the
dry run or the confirmation page listed): `DELETE ... WHERE id = ANY(planned) AND NOT EXISTS
(parent)`, in batches of OPS_ORPHAN_DELETE_BATCH, so a planned row that got its parent back
meanwhile is kept, and an orphan that appeared after the plan is left for the next run. Every
kind asked for is cleared in one transaction with one audit row.

`group_delivery` is not deleted but repaired where it can be: a row is a device's acknowledged
position in a group (`acked_seq`, groups/selectors/messages.py), and deleting it would make the
device read the group again from when its user joined. Its `message_id` is repointed to the
group's latest existing message with `seq <= acked_seq` (same position); only a row with no such
message is deleted.

Safe without locks: a row whose parent is gone stays orphaned (parent ids are never reused), and
the NOT EXISTS is evaluated by the statement that deletes; the repointed message is held by the
foreign key's check (FOR KEY SHARE) until commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction

from chatsite.accounts.models import SecurityEvent, User
from chatsite.accounts.services import audit_record
from ops.integrity.registry import CHECKS

# kind -> the table its rows are in
KINDS: dict[str, str] = {
    "group_delivery": "group_delivery",
    "status_audience": "status_audience",
    "status_views": "status_views",
    "dm_delivery": "dm_delivery",
}
# Ids of each kind named in the audit row (the counts are complete).
AUDIT_IDS = 50


# kind -> (foreign key column, parent table)
PARENTS: dict[str, tuple[str, str]] = {
    "group_delivery": ("message_id", "group_messages"),
    "status_audience": ("post_id", "status_posts"),
    "status_views": ("post_id", "status_posts"),
    "dm_delivery": ("message_id", "dm_messages"),
}


@dataclass(frozen=True)
class Orphans:
    kind: str
    table: str
    ids: list[int]  # found (orphans_find), or deleted (orphans_clear)
    repaired: list[int] = field(default_factory=list)  # group_delivery rows repointed, not deleted


def _detection_sql(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    name = f"orphaned_{kind}"
    return next(c.offending_sql for c in CHECKS if c.name == name)


def orphans_find(*, kind: str) -> Orphans:
    """Read-only: the ids of every orphaned row of `kind`, ascending (what a clear changes)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT offending.id FROM ({_detection_sql(kind)}) AS offending ORDER BY 1")  # noqa: S608 (registry SQL, no input)
        return Orphans(kind=kind, table=KINDS[kind], ids=[row[0] for row in cursor.fetchall()])


# A group_delivery position whose message is gone, moved to the group's latest message at or
# before it (uq_group_messages_group_seq); rows with no such message are left for the DELETE.
_REPOINT_GROUP_DELIVERY = """
UPDATE group_delivery gd SET message_id = (
    SELECT m.id FROM group_messages m
    WHERE m.group_id = gd.group_id AND m.seq <= gd.acked_seq ORDER BY m.seq DESC LIMIT 1
)
WHERE gd.id = ANY(%s)
  AND NOT EXISTS (SELECT 1 FROM group_messages p WHERE p.id = gd.message_id)
  AND EXISTS (
    SELECT 1 FROM group_messages m WHERE m.group_id = gd.group_id AND m.seq <= gd.acked_seq
  )
RETURNING gd.id
"""


def _clear(cursor, plan: Orphans) -> Orphans:
    """Repair (group_delivery) or delete the planned rows of one kind that are still orphaned."""
    if plan.kind not in KINDS:
        raise ValueError(f"unknown kind {plan.kind!r}; one of {', '.join(KINDS)}")
    table, (fk, parent) = KINDS[plan.kind], PARENTS[plan.kind]
    batch = settings.OPS_ORPHAN_DELETE_BATCH
    deleted: list[int] = []
    repaired: list[int] = []
    for start in range(0, len(plan.ids), batch):
        ids = list(plan.ids[start : start + batch])
        if plan.kind == "group_delivery":
            cursor.execute(_REPOINT_GROUP_DELIVERY, [ids])
            repaired += [row[0] for row in cursor.fetchall()]
        cursor.execute(
            f"DELETE FROM {table} t WHERE t.id = ANY(%s) "  # noqa: S608 (fixed names from PARENTS)
            f"AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE p.id = t.{fk}) RETURNING t.id",
            [ids],
        )
        deleted += [row[0] for row in cursor.fetchall()]
    return Orphans(kind=plan.kind, table=table, ids=sorted(deleted), repaired=sorted(repaired))


@transaction.atomic
def orphans_clear_planned(*, plans: Sequence[Orphans], by: User | None, reason: str = "") -> list[Orphans]:
    """Clear the planned rows (`orphans_find`'s results: exactly the ids shown to the operator)
    of every kind in `plans`, in one transaction; returns, per kind, what was deleted and (for
    group_delivery) repaired. One REMEDIATION_APPLIED audit row for the lot (per kind: table,
    counts and the first ids), none when nothing changed."""
    with connection.cursor() as cursor:
        done = [_clear(cursor, plan) for plan in plans if plan.ids]
    if any(r.ids or r.repaired for r in done):
        audit_record(
            kind=SecurityEvent.Kind.REMEDIATION_APPLIED,
            by=by,
            reason=reason,
            remediation="clear_orphans",
            orphan_kinds=[r.kind for r in done],
            deleted=sum(len(r.ids) for r in done),
            repaired=sum(len(r.repaired) for r in done),
            kinds={
                r.kind: {
                    "table": r.table,
                    "deleted": len(r.ids),
                    "first_ids": r.ids[:AUDIT_IDS],
                    "repaired": len(r.repaired),
                    "first_repaired_ids": r.repaired[:AUDIT_IDS],
                }
                for r in done
            },
        )
    return done


def orphans_clear(
    *, kind: str, by: User | None, reason: str = "", ids: Sequence[int] | None = None
) -> Orphans:
    """One kind (the admin's button): the planned `ids` if given (what the confirmation page
    listed), else the orphans found now. See orphans_clear_planned."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    plan = orphans_find(kind=kind) if ids is None else Orphans(kind=kind, table=KINDS[kind], ids=list(ids))
    [done] = orphans_clear_planned(plans=[plan], by=by, reason=reason) or [
        Orphans(kind=kind, table=KINDS[kind], ids=[])
    ]
    return done
