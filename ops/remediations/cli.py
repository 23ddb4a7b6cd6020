"""What every destructive remediation command shares (Django's flush.py, Zulip's delete_user.py):
`--dry-run` prints the plan and changes nothing; otherwise the plan is printed, confirmed (type
"yes", or `--yes`/`--noinput`), applied in one transaction by the service, and what changed is
printed. `--by USERNAME` names the operator in the audit row (empty: a shell without one)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from chatsite.accounts.models import User
from chatsite.api.errors import ApiError


class RemediationCommand(BaseCommand):
    reason_required = False

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Print what would change; change nothing.")
        parser.add_argument("--yes", "--noinput", action="store_true", dest="yes", help="Do not ask.")
        parser.add_argument("--by", default="", metavar="USERNAME", help="The operator, for the audit row.")
        parser.add_argument(
            "--reason",
            default="",
            required=self.reason_required,
            help="Why, for the audit row" + (" (required)." if self.reason_required else "."),
        )

    def operator(self, username: str) -> User | None:
        if not username:
            return None
        return self.user_named(username)

    def user_named(self, username: str) -> User:
        user = User.objects.filter(username=User.normalize_username(username)).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        return user

    def plan(self, lines: list[str]) -> None:
        for line in lines:
            self.stdout.write(line)

    def confirmed(self, *, dry_run: bool, yes: bool) -> bool:
        """False after a dry run (nothing more to do); raises CommandError unless confirmed."""
        if dry_run:
            self.stdout.write("Dry run: nothing changed.")
            return False
        if not yes and input("Type 'yes' to continue: ").strip() != "yes":
            raise CommandError("Aborted; nothing changed.")
        return True

    def done(self, message: str) -> None:
        self.stdout.write(self.style.SUCCESS(message))


def api_error(exc: ApiError) -> CommandError:
    return CommandError(f"{exc.code}: {exc.detail}")
