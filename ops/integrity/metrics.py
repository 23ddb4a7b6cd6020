"""Prometheus gauges of the integrity checks, read from ops_integrity_results at scrape time.

The checks run in a Celery worker (or `manage.py integrity_check`); their results are rows, so
every web process exports the same figures. Registered from OpsConfig.ready() through
chatsite.metrics.register_state_collector (added to the multiprocess registry as well).

- `integrity_violations{check, severity}`: offending rows found by the check's last run. Left out
  for a check whose last run did not finish (its count is unknown; see the next gauge).
- `integrity_check_errors{check, severity}`: 1 when the last run failed or timed out, else 0.
- `integrity_check_last_run_timestamp_seconds{check}`: when it last ran (Unix time).
- `integrity_check_duration_seconds{check}`: how long its last run took.
"""

from __future__ import annotations

HELP = {
    "integrity_violations": "Offending rows found by the integrity check's last run (ops/integrity)",
    "integrity_check_errors": "1 when the integrity check's last run failed or hit the statement timeout",
    "integrity_check_last_run_timestamp_seconds": "Unix time of the integrity check's last run",
    "integrity_check_duration_seconds": "Seconds the integrity check's last run took",
}


class IntegrityCollector:
    def _families(self):
        from prometheus_client.core import GaugeMetricFamily

        return {
            "integrity_violations": GaugeMetricFamily(
                "integrity_violations", HELP["integrity_violations"], labels=["check", "severity"]
            ),
            "integrity_check_errors": GaugeMetricFamily(
                "integrity_check_errors", HELP["integrity_check_errors"], labels=["check", "severity"]
            ),
            "integrity_check_last_run_timestamp_seconds": GaugeMetricFamily(
                "integrity_check_last_run_timestamp_seconds",
                HELP["integrity_check_last_run_timestamp_seconds"],
                labels=["check"],
            ),
            "integrity_check_duration_seconds": GaugeMetricFamily(
                "integrity_check_duration_seconds", HELP["integrity_check_duration_seconds"], labels=["check"]
            ),
        }

    def describe(self):
        # Declared without samples so registering does not touch the database.
        yield from self._families().values()

    def collect(self):
        from django.db import DatabaseError

        from ops.integrity.selectors import latest_results

        try:
            results = latest_results()
        except DatabaseError:
            return
        families = self._families()
        for r in results:
            if not r.error:
                families["integrity_violations"].add_metric([r.check_name, r.severity], r.violations)
            families["integrity_check_errors"].add_metric([r.check_name, r.severity], 1 if r.error else 0)
            families["integrity_check_last_run_timestamp_seconds"].add_metric(
                [r.check_name], r.checked_at.timestamp()
            )
            families["integrity_check_duration_seconds"].add_metric([r.check_name], r.duration_ms / 1000)
        yield from families.values()


state_collector = IntegrityCollector()
