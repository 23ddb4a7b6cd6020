"""`manage.py low_prekeys [--below N] [--json]`: seed 001 "Stuck Device Remediation": active
devices with fewer than N one-time prekeys (E2EE_OTPK_CRITICAL, 5, by default). Counts only,
never a key. Read-only (ops.reports.low_prekeys)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from ops import reports


class Command(BaseCommand):
    help = "Active devices with a low one-time prekey pool."

    def add_arguments(self, parser):
        parser.add_argument("--below", type=int, default=None, help="Default: E2EE_OTPK_CRITICAL.")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, below, **options):
        rows = reports.low_prekeys(below=below)
        if options["json"]:
            self.stdout.write(json.dumps(rows, default=str, indent=2))
            return
        self.stdout.write(f"{len(rows)} active device(s) with a low prekey pool:")
        for r in rows:
            seen = r["last_seen_at"].isoformat() if r["last_seen_at"] else "never"
            self.stdout.write(
                f"  {r['device_id']}  {r['username']:24} {r['device_name']!r:20} "
                f"prekeys={r['prekeys_remaining']}  last seen {seen}"
            )
