"""Prometheus metrics of the presence app (docs/presence.md, "Metrics")."""

from prometheus_client import Counter, Gauge

PRESENCE_LIVE_STREAMS = Gauge(
    "presence_live_streams",
    "Streams (/ws, /dm/sse) currently marking their user online",
    multiprocess_mode="livesum",
)
PRESENCE_HEARTBEATS = Counter(
    "presence_heartbeats_total", "Presence heartbeats handled (liveness refreshed), by store", ["store"]
)
PRESENCE_FLUSHES = Counter(
    "presence_last_seen_flushes_total", "user_presence.last_seen_at rows written, by cause", ["cause"]
)
PRESENCE_TRANSITIONS = Counter(
    "presence_transitions_total", "Online/offline transitions pushed to contacts", ["state"]
)


class PresenceStateCollector:
    """Read at scrape time: users marked online in user_presence (one COUNT over the
    table has one row per user who ever connected)."""

    def collect(self):
        from django.db import DatabaseError
        from prometheus_client.core import GaugeMetricFamily

        from presence.models import UserPresence

        try:
            online = UserPresence.objects.filter(device_online=True).count()
        except DatabaseError:
            return
        gauge = GaugeMetricFamily("presence_online_users", "Users with at least one live stream")
        gauge.add_metric([], online)
        yield gauge

    def describe(self):
        return []


state_collector = PresenceStateCollector()
