"""`manage.py promote_group_owner GROUP_ID [--member USER_ID] [--reason R] [--by U] [--dry-run]
[--yes]`: give an orphaned group an owner (seed 000 "Owner leaves group": the most senior admin by
joined_at, or the named member), through groups.services.remediations.group_owner_promote."""

from __future__ import annotations

import uuid

from django.core.management.base import CommandError

from chatsite.api.errors import ApiError
from groups.services.remediations import group_owner_promote, group_owner_promote_plan
from ops.remediations.cli import RemediationCommand, api_error


class Command(RemediationCommand):
    help = "Promote the most senior admin (or --member) to owner of a group that has none."

    def add_arguments(self, parser):
        parser.add_argument("group_id")
        parser.add_argument("--member", type=int, metavar="USER_ID", help="Promote this member instead.")
        super().add_arguments(parser)

    def handle(self, *args, group_id, member, dry_run, yes, by, reason, **options):
        try:
            group_id = uuid.UUID(group_id)
        except ValueError as exc:
            raise CommandError(f"{group_id!r} is not a group id (a UUID).") from exc
        operator = self.operator(by)
        try:
            plan = group_owner_promote_plan(group_id=group_id, user_id=member)
        except ApiError as exc:
            raise api_error(exc) from exc
        self.plan(
            [
                f"Would make {plan.username} (user {plan.user_id}, {plan.previous_role} since "
                f"{plan.joined_at}) the owner of group {plan.group_id}."
            ]
        )
        if not self.confirmed(dry_run=dry_run, yes=yes):
            return
        try:
            done = group_owner_promote(group_id=group_id, user_id=member, by=operator, reason=reason)
        except ApiError as exc:
            raise api_error(exc) from exc
        self.done(f"{done.username} (user {done.user_id}) is now the owner of group {done.group_id}.")
