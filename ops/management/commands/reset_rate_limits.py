"""`manage.py reset_rate_limits USERNAME | --all [--reason R] [--by U] [--dry-run] [--yes]`: remove
one user's rate-limit windows, or every one (seed 002 "Flush rate limit counters": `rl:*` keys
only, never FLUSHDB), through ops.remediations.rate_limits; a RATE_LIMIT_RESET audit row."""

from __future__ import annotations

import redis
from django.core.management.base import CommandError

from ops.remediations.cli import RemediationCommand
from ops.remediations.rate_limits import (
    rate_limits_flush,
    rate_limits_flush_plan,
    rate_limits_reset,
    rate_limits_reset_plan,
)


class Command(RemediationCommand):
    help = "Reset one user's rate-limit windows, or flush them all with --all (rl:* keys only)."

    def add_arguments(self, parser):
        parser.add_argument("username", nargs="?")
        parser.add_argument("--all", action="store_true", dest="flush", help="Every rl:* key, of every user.")
        super().add_arguments(parser)

    def handle(self, *args, username, flush, dry_run, yes, by, reason, **options):
        if bool(username) == flush:
            raise CommandError("Give a USERNAME or --all (not both).")
        operator = self.operator(by)
        try:
            if flush:
                self._flush(operator, dry_run=dry_run, yes=yes, reason=reason)
            else:
                self._reset(self.user_named(username), operator, dry_run=dry_run, yes=yes, reason=reason)
        except RuntimeError as exc:  # no Redis configured
            raise CommandError(str(exc)) from exc
        except (redis.RedisError, OSError) as exc:  # down, unreachable, or its circuit breaker open
            raise CommandError(
                f"Redis unavailable ({type(exc).__name__}: {exc}); nothing was removed."
            ) from exc

    def _reset(self, user, operator, *, dry_run, yes, reason):
        keys = rate_limits_reset_plan(user=user)
        self.plan(
            [f"Would remove {len(keys)} rate-limit window(s) of {user.username}:", *[f"  {k}" for k in keys]]
        )
        if not keys or not self.confirmed(dry_run=dry_run, yes=yes):
            return
        removed = rate_limits_reset(user=user, by=operator, reason=reason)
        self.done(f"Removed {len(removed)} rate-limit window(s) of {user.username}.")

    def _flush(self, operator, *, dry_run, yes, reason):
        counts = rate_limits_flush_plan()
        self.plan(
            [
                f"Would remove every rate-limit window (rl:* keys only): {sum(counts.values())} key(s).",
                *[f"  {scope}: {n}" for scope, n in counts.items()],
            ]
        )
        if not self.confirmed(dry_run=dry_run, yes=yes):
            return
        removed = rate_limits_flush(by=operator, reason=reason)
        self.done(f"Removed {sum(removed.values())} rate-limit window(s) (rl:* keys only).")
        for scope, n in removed.items():
            self.stdout.write(f"  {scope}: {n}")
