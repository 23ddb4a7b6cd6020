"""Write docs/errors.md from the error registry, so the docs cannot drift from the code."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from chatsite.api.errors import ERRORS

HEADER = """# Error codes

Generated from `chatsite/api/errors.py` by `python manage.py errors_doc`; do not edit by hand
(`tests/api/test_errors_doc.py` fails when this file and the registry differ).

Every REST error is a JSON body `{"code": "...", "detail": "..."}` (plus fields named below) with
the HTTP status in this table. On `/ws` the same error is a frame
`{"type": "error", "code": "...", "detail": "...", "ref": <the request frame's ref>}`.

| code | HTTP | default detail | meaning |
|---|---|---|---|
"""

FOOTER = """
Extra body fields:
- `VALIDATION_ERROR`: `errors`, the field errors (`{"field": ["message", ...]}`).
- `RATE_LIMITED`: `retry_in_seconds`; the response also carries `X-Retry-After` (and `Retry-After`).
- `DEVICE_MISMATCH`: `missing_devices`, `extra_devices`, `revoked_devices` (device ids).
- `FEATURE_DISABLED`: `feature` (`dm`, `groups`, `status`, `presence`).
- `PREKEYS_EXHAUSTED`: `exhausted_devices`.
- `INVALID_SIGNATURE`: `field`, the key whose signature did not verify (e.g. `signed_prekey`,
  `fallback_key`, `one_time_prekeys[3]`).
- `DATABASE_UNAVAILABLE`: `retry_in_seconds`; the response also carries `Retry-After` (seconds until
  the database circuit breaker lets a trial request through; docs/operations.md "Circuit breaker").
- `MESSAGE_WRITE_DISABLED`: `feature` (`message_write`); refused on every message write (REST and
  `/ws` frames) while the MESSAGE_WRITE flag is off; reads keep working.
"""


def render() -> str:
    rows = "".join(
        f"| `{code}` | {spec.status} | {spec.detail} | {spec.meaning} |\n" for code, spec in ERRORS.items()
    )
    return HEADER + rows + FOOTER


class Command(BaseCommand):
    help = "Regenerate docs/errors.md from chatsite.api.errors.ERRORS."

    def handle(self, *args, **options):
        path = Path(settings.BASE_DIR) / "docs" / "errors.md"
        path.write_text(render())
        self.stdout.write(self.style.SUCCESS(f"wrote {path} ({len(ERRORS)} codes)"))
