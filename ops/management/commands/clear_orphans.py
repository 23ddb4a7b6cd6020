"""`manage.py clear_orphans --kind KIND|all [--reason R] [--by U] [--dry-run] [--yes]`: seed 000
§9 "Orphaned records": group_delivery, status_audience, status_views or dm_delivery rows whose
parent is gone, through ops.remediations.orphans.orphans_clear_planned: exactly the ids it
listed (a row that got its parent back meanwhile is kept), every kind in one transaction with one
audit row. A group_delivery row (a device's acknowledged position) is repointed to the group's
latest message at or before it where one exists ("repaired") and deleted only otherwise."""

from __future__ import annotations

from ops.remediations.cli import RemediationCommand
from ops.remediations.orphans import KINDS, orphans_clear_planned, orphans_find

SHOWN_IDS = 20


def _ids(ids: list[int]) -> str:
    more = f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else ""
    return ", ".join(map(str, ids[:SHOWN_IDS])) + more


class Command(RemediationCommand):
    help = (
        "Clear orphaned rows: group_delivery (repaired where it can be), status_audience, "
        "status_views, dm_delivery."
    )

    def add_arguments(self, parser):
        parser.add_argument("--kind", required=True, choices=[*KINDS, "all"])
        super().add_arguments(parser)

    def handle(self, *args, kind, dry_run, yes, by, reason, **options):
        operator = self.operator(by)
        kinds = list(KINDS) if kind == "all" else [kind]
        plans = [orphans_find(kind=k) for k in kinds]
        for plan in plans:
            if not plan.ids:
                self.stdout.write(f"No orphaned {plan.table} rows.")
            elif plan.kind == "group_delivery":
                self.stdout.write(
                    f"Would repair or delete {len(plan.ids)} orphaned {plan.table} row(s): ids "
                    f"{_ids(plan.ids)} (each is repointed to its group's latest message at or before "
                    "its acknowledged seq, and deleted only if there is none)"
                )
            else:
                self.stdout.write(
                    f"Would delete {len(plan.ids)} orphaned {plan.table} row(s): ids {_ids(plan.ids)}"
                )
        if not any(plan.ids for plan in plans):
            return
        if not self.confirmed(dry_run=dry_run, yes=yes):
            return
        results = orphans_clear_planned(plans=plans, by=operator, reason=reason)
        for done in results:
            if done.repaired:
                self.stdout.write(
                    f"Repaired {len(done.repaired)} orphaned {done.table} row(s): ids {_ids(done.repaired)}"
                )
            if done.ids or not done.repaired:
                self.stdout.write(
                    f"Deleted {len(done.ids)} orphaned {done.table} row(s): ids {_ids(done.ids)}"
                )
        deleted, repaired = sum(len(d.ids) for d in results), sum(len(d.repaired) for d in results)
        self.done(f"Deleted {deleted} and repaired {repaired} row(s) in one transaction.")
