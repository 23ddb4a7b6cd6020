"""Compromised account (seed 002): end every session, close its websockets, disable the account.

manage.py disable_account <username> [--reason TEXT] [--dry-run] [--yes]
"""

from django.core.management.base import BaseCommand, CommandError

from chatsite.accounts import selectors, services
from chatsite.accounts.models import User


class Command(BaseCommand):
    help = "Disable an account: revoke all its sessions and force-disconnect its live streams."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--reason", default="", help="Recorded in the security event.")
        parser.add_argument("--dry-run", action="store_true", help="Say what would happen; change nothing.")
        parser.add_argument("--yes", "--noinput", action="store_true", dest="yes", help="Do not ask.")

    def handle(self, *args, username: str, reason: str, dry_run: bool, yes: bool, **options):
        user = User.objects.filter(username=User.normalize_username(username)).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        sessions = selectors.sessions_for_user(user=user).count()
        self.stdout.write(
            f"Would disable {user.username} (account_id {user.pk}, disabled={user.disabled}) "
            f"and revoke {sessions} live session(s)."
        )
        if dry_run:
            return
        if not yes and input("Type 'yes' to continue: ").strip() != "yes":
            raise CommandError("Aborted.")
        revoked = services.account_disable(user=user, reason=reason)
        self.stdout.write(self.style.SUCCESS(f"Disabled {user.username}; revoked {revoked} session(s)."))
