"""End every session of a user and close their live websockets (ForceDisconnect, seed 002),
without disabling the account.

    manage.py revoke_sessions <username> [--dry-run] [--yes]
"""

from django.core.management.base import BaseCommand, CommandError

from chatsite.accounts import selectors, services
from chatsite.accounts.models import User


class Command(BaseCommand):
    help = "Revoke all sessions of a user (they must log in again)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--dry-run", action="store_true")
        parser.add_argument("--yes", "--noinput", action="store_true", dest="yes")

    def handle(self, *args, username: str, dry_run: bool, yes: bool, **options):
        user = User.objects.filter(username=User.normalize_username(username)).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        count = selectors.sessions_for_user(user=user).count()
        self.stdout.write(f"Would revoke {count} live session(s) of {user.username}.")
        if dry_run:
            return
        if not yes and input("Type 'yes' to continue: ").strip() != "yes":
            raise CommandError("Aborted.")
        revoked = services.sessions_revoke_all(user=user)
        self.stdout.write(self.style.SUCCESS(f"Revoked {revoked} session(s) of {user.username}."))
