"""Metrics the alerts need that are configuration, not events: read at scrape time."""

from __future__ import annotations


class LimitsCollector:
    """websocket_connections_max: MAX_TOTAL_CONNECTIONS, the connections one server process
    admits (chatsite/realtime/limits.py), so "connections > 90 % of the max" is one ratio."""

    reads_database = False  # exported even while the database is down (ops.views._registry)

    def collect(self):
        from django.conf import settings
        from prometheus_client.core import GaugeMetricFamily

        gauge = GaugeMetricFamily(
            "websocket_connections_max", "MAX_TOTAL_CONNECTIONS: streams one server process admits"
        )
        gauge.add_metric([], settings.MAX_TOTAL_CONNECTIONS)
        yield gauge

    def describe(self):
        return []


limits_collector = LimitsCollector()
