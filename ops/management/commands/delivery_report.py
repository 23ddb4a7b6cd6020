"""`manage.py delivery_report [--minutes M | --since ISO] [--json]`: seed 001 "Post-Recovery
Verification": what was stored vs delivered in a window (direct messages and their per-device
envelopes, group messages, sender-key envelopes). Read-only (ops.reports.delivery)."""

from __future__ import annotations

import json
from datetime import UTC, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ops import reports


class Command(BaseCommand):
    help = "Stored vs delivered messages in a window (default: the last 60 minutes)."

    def add_arguments(self, parser):
        window = parser.add_mutually_exclusive_group()
        window.add_argument("--minutes", type=float, default=None)
        window.add_argument("--since", default=None, help="ISO 8601 start, e.g. 2026-01-01T10:00:00Z.")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, minutes, since, **options):
        now = timezone.now()
        if since:
            start = parse_datetime(since)
            if start is None:
                raise CommandError(f"--since {since!r} is not an ISO 8601 date and time.")
            if timezone.is_naive(start):
                start = timezone.make_aware(start, UTC)
        else:
            start = now - timedelta(minutes=60 if minutes is None else minutes)
        report = reports.delivery(since=start, until=now)
        if options["json"]:
            self.stdout.write(json.dumps(report, default=str, indent=2))
            return
        self.stdout.write(
            f"Delivery report {report['since']:%Y-%m-%d %H:%M:%S} .. {report['until']:%H:%M:%S} UTC"
        )
        dm, groups = report["dm"], report["groups"]
        self.stdout.write(
            f"  direct messages stored: {dm['messages']}; envelopes: {dm['envelopes']} stored, "
            f"{dm['handed_over']} handed to a stream, {dm['acknowledged']} acknowledged, "
            f"{dm['pending']} pending ({dm['pending_overdue']} for over {dm['overdue_after_s']} s)"
        )
        self.stdout.write(
            f"  group messages stored: {groups['messages']}; sender-key distributions: "
            f"{groups['sender_key_distributions']}, envelopes {groups['sender_key_envelopes']} stored, "
            f"{groups['sender_key_envelopes_acknowledged']} acknowledged"
        )
