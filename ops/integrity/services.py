"""Running integrity checks and remembering their results (ops_integrity_results).

`integrity_run` is the one use case behind the beat task (ops.tasks.run_integrity_checks), the
`integrity_check` command and the staff dashboard. Each check runs in its own read-only
transaction under `SET LOCAL statement_timeout` (INTEGRITY_STATEMENT_TIMEOUT_MS; waiting for a
lock counts towards it), so one slow or blocked check is recorded as an error and the others
still run. Results are upserted one row per check, so a worker's run shows on every web process
(/metrics reads them: ops/integrity/metrics.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from ops.integrity.registry import CHECKS, CRITICAL, Check, query_params
from ops.models import IntegrityResult

logger = logging.getLogger("chatsite.ops.integrity")

ERROR_MAX_CHARS = 200  # IntegrityResult.error


@dataclass
class CheckOutcome:
    check: Check
    violations: int | None  # None when the query did not finish
    error: str = ""
    duration_ms: float = 0.0
    samples: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Offending rows found, or the check could not tell (an error counts as a failure)."""
        return bool(self.error) or bool(self.violations)

    @property
    def critical_failure(self) -> bool:
        return self.failed and self.check.severity == CRITICAL


def _describe(exc: DatabaseError, timeout_ms: int) -> str:
    cause = exc.__cause__ or exc
    if type(cause).__name__ == "QueryCanceled":
        return f"statement timeout ({timeout_ms} ms)"
    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"{type(cause).__name__}: {first_line}"[:ERROR_MAX_CHARS]


def _run_one(check: Check, params: dict, *, samples: int, timeout_ms: int) -> CheckOutcome:
    postgres = connection.vendor == "postgresql"
    outermost = not connection.in_atomic_block
    started = time.monotonic()
    try:
        # Its own transaction (a savepoint when the caller already holds one): a timeout aborts
        # only this check's statement.
        with transaction.atomic():
            with connection.cursor() as cursor:
                if postgres:
                    if outermost:
                        cursor.execute("SET TRANSACTION READ ONLY")
                    cursor.execute("SELECT current_setting('statement_timeout')")
                    previous = cursor.fetchone()[0]
                    cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(timeout_ms)])
                cursor.execute(check.count_sql, params)
                violations = int(cursor.fetchone()[0])
                listed: list[str] = []
                if samples and violations:
                    cursor.execute(check.sample_sql, {**params, "limit": samples})
                    listed = [row[0] for row in cursor.fetchall()]
                if postgres and not outermost:
                    # SET LOCAL outlives a released savepoint: give the caller its timeout back.
                    cursor.execute("SELECT set_config('statement_timeout', %s, true)", [previous])
    except DatabaseError as exc:
        error = _describe(exc, timeout_ms)
        logger.warning("integrity check did not finish", extra={"check": check.name, "error": error})
        return CheckOutcome(check, None, error=error, duration_ms=(time.monotonic() - started) * 1000)
    return CheckOutcome(check, violations, duration_ms=(time.monotonic() - started) * 1000, samples=listed)


def integrity_run(
    *,
    checks: Iterable[Check] | None = None,
    samples: int = 0,
    timeout_ms: int | None = None,
    record: bool = True,
) -> list[CheckOutcome]:
    """Run `checks` (default: the whole registry), each bounded by `timeout_ms` (default
    INTEGRITY_STATEMENT_TIMEOUT_MS); list up to `samples` offending ids of each failing one;
    store each outcome in ops_integrity_results unless `record` is False. Never raises for a
    check that fails or times out: that check's outcome carries the error."""
    checks = list(CHECKS if checks is None else checks)
    timeout_ms = settings.INTEGRITY_STATEMENT_TIMEOUT_MS if timeout_ms is None else timeout_ms
    params = query_params()
    outcomes = [_run_one(c, params, samples=samples, timeout_ms=timeout_ms) for c in checks]
    for outcome in outcomes:
        if outcome.critical_failure:
            logger.error(
                "critical integrity check failed",
                extra={"check": outcome.check.name, "violations": outcome.violations, "error": outcome.error},
            )
    if record:
        _record(outcomes)
    return outcomes


def _record(outcomes: list[CheckOutcome]) -> None:
    now = timezone.now()
    rows = [
        IntegrityResult(
            check_name=o.check.name,
            severity=o.check.severity,
            # A check that did not finish keeps 0 here; `error` says why and the gauge is left out.
            violations=o.violations or 0,
            error=o.error[:ERROR_MAX_CHARS],
            duration_ms=round(o.duration_ms, 3),
            checked_at=now,
        )
        for o in outcomes
    ]
    # One upsert per run (the primary key is the check's name): concurrent runs both succeed,
    # the later commit wins.
    IntegrityResult.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["check_name"],
        update_fields=["severity", "violations", "error", "duration_ms", "checked_at"],
    )
