"""`manage.py connections_report [--limit N] [--json]`: seed 004 runbook 2 "Connection Storms":
live streams in every process by source address, by user agent, by user and by transport, from
the records streams keep in Redis (chatsite.realtime.live_connections). Read-only."""

from __future__ import annotations

import json

import redis
from django.core.management.base import BaseCommand, CommandError

from ops import reports


class Command(BaseCommand):
    help = "Live connections by IP, user agent, user and transport (the connection-storm runbook)."

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=20, help="Rows per grouping.")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, limit, **options):
        try:
            report = reports.connections(limit=limit)
        except RuntimeError as exc:  # no Redis configured
            raise CommandError(str(exc)) from exc
        except (redis.RedisError, OSError) as exc:  # down, unreachable, or its circuit breaker open
            raise CommandError(f"Redis unavailable ({type(exc).__name__}: {exc})") from exc
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
            return
        self.stdout.write(f"Live streams: {report['total']}  {report['by_transport']}")
        for title, key in (("By IP", "by_ip"), ("By user agent", "by_user_agent"), ("By user", "by_user")):
            self.stdout.write(f"{title}:")
            for value, n in report[key]:
                self.stdout.write(f"  {n:>6}  {value}")
        self.stdout.write("Limits: " + ", ".join(f"{k}={v}" for k, v in report["limits"].items()))
