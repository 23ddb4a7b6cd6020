"""Reading the stored results of integrity checks (what /metrics and the dashboard show)."""

from __future__ import annotations

from ops.integrity.registry import BY_NAME
from ops.models import IntegrityResult


def latest_results() -> list[IntegrityResult]:
    """The last stored result of every check still in the registry, by name (one row per check:
    a primary-key scan of ops_integrity_results). Rows of checks since removed are left out."""
    return [r for r in IntegrityResult.objects.order_by("check_name") if r.check_name in BY_NAME]
