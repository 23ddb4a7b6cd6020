"""Feature flags at runtime (docs/operations.md "Feature flags at runtime").

manage.py feature_flag list
manage.py feature_flag set NAME on|off --reason TEXT [--by USERNAME] [--dry-run] [--yes]
manage.py feature_flag clear NAME --reason TEXT [--by USERNAME] [--dry-run] [--yes]

NAME: GROUPS, STATUS, PRESENCE, E2EE_DM, MESSAGE_WRITE. Every process follows within
FEATURE_FLAG_REFRESH_S; `clear` returns the flag to the environment's value.
"""

from django.core.management.base import BaseCommand, CommandError

from chatsite.accounts.models import User
from chatsite.api import flags, selectors, services


def _on_off(value: bool | None) -> str:
    return "-" if value is None else ("on" if value else "off")


class Command(BaseCommand):
    help = "List, set or clear runtime feature-flag overrides (audited; every process follows)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="Each flag's effective value and where it comes from.")
        for name, text in (("set", "Override a flag."), ("clear", "Back to the environment's value.")):
            p = sub.add_parser(name, help=text)
            p.add_argument("name", help=", ".join(f.name for f in flags.FLAGS.values()))
            if name == "set":
                p.add_argument("value", choices=["on", "off"])
            p.add_argument("--reason", required=True, help="Recorded in the audit row (security_events).")
            p.add_argument("--by", default="", help="Staff username recorded as the one who did it.")
            p.add_argument("--dry-run", action="store_true", help="Say what would change; change nothing.")
            p.add_argument("--yes", "--noinput", action="store_true", dest="yes", help="Do not ask.")

    def handle(self, *args, action: str, **options):
        if action == "list":
            return self._list()
        try:
            feature = flags.lookup(options["name"])
        except KeyError:
            raise CommandError(
                f"Unknown flag {options['name']!r}; one of {', '.join(f.name for f in flags.FLAGS.values())}."
            ) from None
        by = None
        if options["by"]:
            by = User.objects.filter(username=User.normalize_username(options["by"])).first()
            if by is None:
                raise CommandError(f"No user {options['by']!r}.")
        reason = options["reason"].strip()
        if not reason:
            raise CommandError("--reason must not be empty.")
        state = next(s for s in selectors.flag_states() if s.feature == feature)
        if action == "set":
            enabled = options["value"] == "on"
            plan = (
                f"{state.name}: {_on_off(state.effective)} ({state.source}) -> {_on_off(enabled)} (override)"
            )
        else:
            after = _on_off(state.env_default)
            plan = f"{state.name}: {_on_off(state.effective)} ({state.source}) -> {after} (environment)"
        self.stdout.write(f"Would change {plan}.")
        if options["dry_run"]:
            return
        if not options["yes"] and input("Type 'yes' to continue: ").strip() != "yes":
            raise CommandError("Aborted.")
        if action == "set":
            change = services.flag_set(name=state.name, enabled=enabled, by=by, reason=reason)
        else:
            change = services.flag_clear(name=state.name, by=by, reason=reason)
        self.stdout.write(
            self.style.SUCCESS(
                f"{change.name}: {_on_off(change.before)} -> {_on_off(change.after)} ({change.source}); "
                "every process follows within FEATURE_FLAG_REFRESH_S."
            )
        )

    def _list(self) -> None:
        self.stdout.write(f"{'flag':<14} {'effective':<9} {'source':<11} {'env':<4} changed")
        for s in selectors.flag_states():
            changed = ""
            if s.changed_at:
                changed = f"{s.changed_at:%Y-%m-%d %H:%M:%S} by {s.changed_by or '-'}: {s.reason}"
            self.stdout.write(
                f"{s.name:<14} {_on_off(s.effective):<9} {s.source:<11} {_on_off(s.env_default):<4} {changed}"
            )
