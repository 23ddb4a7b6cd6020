"""`manage.py dedupe_participants [--reason R] [--by U] [--dry-run] [--yes]`: seed 000 "Concurrent
add/remove causing duplicates": remove duplicate participants keeping the most recent (which takes
the highest role of its duplicates), then verify (and if need be restore)
uq_group_participants_group_user, through
groups.services.remediations.participants_dedupe."""

from __future__ import annotations

from groups.selectors.members import duplicate_participants
from groups.services.remediations import UNIQUE_CONSTRAINT, participants_dedupe, unique_constraint_present
from ops.remediations.cli import RemediationCommand


def _row(p) -> str:
    banned = ", banned" if p.is_banned else ""
    joined = p.joined_at.isoformat()
    return f"participant {p.pk} (group {p.group_id}, user {p.user_id}, {p.role}{banned}, joined {joined})"


class Command(RemediationCommand):
    help = "Remove duplicate group participants (keeping the most recent) and verify the unique constraint."

    def handle(self, *args, dry_run, yes, by, reason, **options):
        operator = self.operator(by)
        if unique_constraint_present():
            self.stdout.write(f"{UNIQUE_CONSTRAINT} exists, so there can be no duplicates: nothing to do.")
            return
        duplicates = duplicate_participants()
        lines = [f"{UNIQUE_CONSTRAINT} is MISSING; it will be restored after the clean-up."]
        for duplicate in duplicates:
            kept, extra = duplicate
            lines.append(f"Keep {_row(kept)}")
            if duplicate.kept_role != kept.role:
                lines.append(
                    f"  it takes the highest role of its duplicates: {kept.role} -> {duplicate.kept_role}"
                )
            if duplicate.loses_owner:
                lines.append(
                    f"  its owner row goes and it is banned: group {kept.group_id} passes to its heir"
                )
            lines += [f"  delete {_row(row)}" for row in extra]
        lines.append(f"Would delete {sum(len(extra) for _, extra in duplicates)} duplicate row(s).")
        self.plan(lines)
        if not self.confirmed(dry_run=dry_run, yes=yes):
            return
        result = participants_dedupe(by=operator, reason=reason)
        for row in result.removed:
            self.stdout.write(
                f"Deleted participant {row['participant_id']} (kept {row['kept_participant_id']})."
            )
        for role in result.roles:
            self.stdout.write(f"Participant {role['participant_id']}: role {role['from']} -> {role['to']}.")
        for group_id, heir in result.owners_promoted.items():
            owner = f"user {heir} is its owner" if heir else "nobody could own it (promote_group_owner)"
            self.stdout.write(f"Group {group_id}: {owner}.")
        for group_id, (before, after) in result.member_counts.items():
            self.stdout.write(f"Group {group_id}: member_count {before} -> {after}.")
        self.done(f"Deleted {len(result.removed)} duplicate row(s); {UNIQUE_CONSTRAINT} restored.")
