"""Circuit breakers (seed 004 "Cascading Failures"; docs/operations.md "Circuit breaker").

manage.py circuit_breaker status
manage.py circuit_breaker reset [--dependency database|redis] --reason TEXT [--by USERNAME]
                                [--dry-run] [--yes]

Breaker state lives in each server process. `status` shows what the servers report through the
shared metrics directory (PROMETHEUS_MULTIPROC_DIR: the worst process per dependency) and the last
reset; each server's own state is in its /health. `reset` bumps the reset generation in the
database, which every process applies within FEATURE_FLAG_REFRESH_S (audited).
"""

from __future__ import annotations

import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from chatsite.accounts.models import User
from chatsite.api import services
from chatsite.api.circuit import BREAKERS, STATE_VALUE
from chatsite.api.models import DEPENDENCIES, CircuitBreakerReset

_STATE_NAME = {value: name for name, value in STATE_VALUE.items()}


def _served_states(directory: str) -> dict[str, str]:
    """The circuit_breaker_state gauge as the servers wrote it (worst live process wins)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    states: dict[str, float] = {}
    for family in registry.collect():
        if family.name != "circuit_breaker_state":
            continue
        for sample in family.samples:
            dep = sample.labels.get("dependency")
            states[dep] = max(states.get(dep, 0.0), sample.value)
    return {dep: _STATE_NAME.get(int(value), str(value)) for dep, value in states.items()}


class Command(BaseCommand):
    help = "Show or reset the PostgreSQL and Redis circuit breakers (reset reaches every process)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("status", help="Breaker states reported by the servers, settings, last resets.")
        p = sub.add_parser("reset", help="Close a breaker (or both) in every process.")
        p.add_argument("--dependency", choices=DEPENDENCIES, default=None, help="Default: both.")
        p.add_argument("--reason", required=True, help="Recorded in the audit row (security_events).")
        p.add_argument("--by", default="", help="Staff username recorded as the one who did it.")
        p.add_argument("--dry-run", action="store_true", help="Say what would change; change nothing.")
        p.add_argument("--yes", "--noinput", action="store_true", dest="yes", help="Do not ask.")

    def handle(self, *args, action: str, **options):
        if action == "status":
            return self._status()
        by = None
        if options["by"]:
            by = User.objects.filter(username=User.normalize_username(options["by"])).first()
            if by is None:
                raise CommandError(f"No user {options['by']!r}.")
        reason = options["reason"].strip()
        if not reason:
            raise CommandError("--reason must not be empty.")
        deps = [options["dependency"]] if options["dependency"] else list(DEPENDENCIES)
        self.stdout.write(
            f"Would reset the {', '.join(deps)} circuit breaker(s) in every process "
            f"(within FEATURE_FLAG_REFRESH_S={settings.FEATURE_FLAG_REFRESH_S:g}s)."
        )
        if options["dry_run"]:
            return
        if not options["yes"] and input("Type 'yes' to continue: ").strip() != "yes":
            raise CommandError("Aborted.")
        done = services.circuit_breaker_reset(dependency=options["dependency"], by=by, reason=reason)
        self.stdout.write(self.style.SUCCESS(f"Reset requested for {', '.join(done)}."))

    def _status(self) -> None:
        self.stdout.write(
            f"CIRCUIT_BREAKER_FAILURES={settings.CIRCUIT_BREAKER_FAILURES} "
            f"CIRCUIT_BREAKER_RESET_S={settings.CIRCUIT_BREAKER_RESET_S:g}"
        )
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
        served = _served_states(directory) if directory and os.path.isdir(directory) else None
        resets = {r.dependency: r for r in CircuitBreakerReset.objects.select_related("reset_by")}
        for dep in DEPENDENCIES:
            if served is not None:
                state = f"{served.get(dep, 'closed')} (worst server process)"
            else:
                state = f"{BREAKERS[dep].state} (this process only; servers: /health checks.circuit_breaker)"
            last = resets.get(dep)
            reset = (
                f"last reset #{last.generation} {last.reset_at:%Y-%m-%d %H:%M:%S} by "
                f"{last.reset_by.username if last.reset_by else '-'}"
                if last
                else "never reset"
            )
            self.stdout.write(f"{dep:<9} {state}; {reset}")
