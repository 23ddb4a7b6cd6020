"""`manage.py top_senders [--hours H] [--limit N] [--json]`: seed 001 "Identify Abusive User":
who sent the most messages, metadata only (counts, how many recipients and groups, timing; never
content). Read-only (ops.reports.top_senders)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from ops import reports


class Command(BaseCommand):
    help = "Top senders of direct and group messages in the last hours (metadata only)."

    def add_arguments(self, parser):
        parser.add_argument("--hours", type=float, default=1.0)
        parser.add_argument("--limit", type=int, default=10)
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, hours, limit, **options):
        rows = reports.top_senders(hours=hours, limit=limit)
        if options["json"]:
            self.stdout.write(_json(rows))
            return
        self.stdout.write(f"Top senders, last {hours:g} hour(s):")
        self.stdout.write(
            f"{'user':24} {'total':>6} {'dm':>6} {'peers':>6} {'group':>6} {'groups':>6} {'/min':>6}"
            "  first .. last"
        )
        for r in rows:
            self.stdout.write(
                f"{r['username'] + ' (' + str(r['user_id']) + ')':24} {r['total']:>6} {r['dm_messages']:>6} "
                f"{r['dm_recipients']:>6} {r['group_messages']:>6} {r['groups']:>6} {r['per_minute']:>6}  "
                f"{r['first_sent_at']:%H:%M:%S} .. {r['last_sent_at']:%H:%M:%S}"
            )


def _json(value) -> str:
    return json.dumps(value, default=str, indent=2)
