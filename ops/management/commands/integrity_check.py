"""`manage.py integrity_check [--json] [--check NAME ...] [--doc]`: run the integrity checks now.

Exits 1 when a critical check failed (offending rows found, or the check could not finish); a
warning never changes the exit status. The results are stored like the beat task's, so /metrics
and the dashboard show them too.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ops.integrity import registry
from ops.integrity.docs import render_table
from ops.integrity.services import CheckOutcome, integrity_run


class Command(BaseCommand):
    help = "Run the integrity checks (ops/integrity); exit 1 when a critical one fails."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="One JSON document on stdout.")
        parser.add_argument(
            "--check",
            action="append",
            metavar="NAME",
            choices=[c.name for c in registry.CHECKS],
            help="Run only this check (repeatable). Default: every check.",
        )
        parser.add_argument(
            "--doc", action="store_true", help="Print the docs/operations.md table of checks and exit."
        )

    def handle(self, *args, **options):
        if options["doc"]:
            self.stdout.write(render_table(), ending="")
            return
        checks = [registry.get(n) for n in options["check"]] if options["check"] else None
        # Samples are ids only (never ciphertext or key material), listed in the JSON output.
        samples = settings.INTEGRITY_SAMPLE_SIZE if options["json"] else 0
        outcomes = integrity_run(checks=checks, samples=samples)
        if options["json"]:
            self.stdout.write(json.dumps(_as_json(outcomes), indent=2))
        else:
            for outcome in outcomes:
                self.stdout.write(self._line(outcome))
        critical = [o.check.name for o in outcomes if o.critical_failure]
        if critical:
            raise CommandError(f"critical integrity checks failed: {', '.join(critical)}", returncode=1)

    def _line(self, o: CheckOutcome) -> str:
        if o.error:
            status, style = "ERROR", self.style.ERROR
        elif o.violations:
            status, style = "FAIL", self.style.ERROR if o.check.severity == "critical" else self.style.WARNING
        else:
            status, style = "ok", self.style.SUCCESS
        found = o.error or f"{o.violations} found"
        line = (
            f"{style(f'{status:5}')} {o.check.severity:8} {o.check.name:34} {found} ({o.duration_ms:.0f} ms)"
        )
        if o.failed and o.check.remediation:
            line += f"  fix: manage.py {o.check.remediation}"
        return line


def _as_json(outcomes: list[CheckOutcome]) -> dict:
    return {
        "ok": not any(o.critical_failure for o in outcomes),
        "checks": [
            {
                "name": o.check.name,
                "severity": o.check.severity,
                "violations": o.violations,
                "error": o.error or None,
                "failed": o.failed,
                "duration_ms": round(o.duration_ms, 1),
                "runbook": o.check.runbook,
                "remediation": f"manage.py {o.check.remediation}" if o.check.remediation else None,
                "subject": o.check.subject,
                "samples": o.samples,
            }
            for o in outcomes
        ],
    }
