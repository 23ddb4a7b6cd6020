"""`manage.py ban_user USERNAME --reason R [--groups] [--by U] [--dry-run] [--yes]`: ban an abuser
(seed 001 "Abuse Burst Response", seed 002 "Compromised User Account"): disable the account,
revoke every session, force-disconnect every socket and, with --groups, ban them from every group;
one ACCOUNT_BANNED audit row. Through ops.remediations.bans.user_ban."""

from __future__ import annotations

from ops.remediations.bans import user_ban, user_ban_plan
from ops.remediations.cli import RemediationCommand


class Command(RemediationCommand):
    help = "Ban a user: disable, revoke sessions, force-disconnect, optionally ban from every group."
    reason_required = True

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--groups", action="store_true", help="Also ban them from every group they are in."
        )
        super().add_arguments(parser)

    def handle(self, *args, username, groups, dry_run, yes, by, reason, **options):
        operator = self.operator(by)
        user = self.user_named(username)
        plan = user_ban_plan(user=user, groups=groups)
        state = "already disabled" if plan.already_disabled else "active"
        lines = [
            f"Would ban {plan.username} (user {plan.user_id}, {state}): disable the account, revoke "
            f"{plan.live_sessions} live session(s) and force-disconnect every socket."
        ]
        if groups:
            lines += [f"  group {g.group_id} ({g.previous_role}): {g.outcome}" for g in plan.groups]
            lines.append(f"  {sum(g.outcome == 'banned' for g in plan.groups)} group ban(s).")
        self.plan(lines)
        if not self.confirmed(dry_run=dry_run, yes=yes):
            return
        ban = user_ban(user=user, by=operator, reason=reason, groups=groups)
        for g in ban.groups:
            self.stdout.write(f"  group {g.group_id} ({g.previous_role}): {g.outcome}")
        banned = sum(g.outcome == "banned" for g in ban.groups)
        self.done(
            f"Banned {ban.username}: account disabled, {ban.sessions_revoked} session(s) revoked, "
            f"sockets disconnected, {banned} group ban(s)."
        )
