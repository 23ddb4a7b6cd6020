"""Prometheus metrics of the groups app (documented in docs/operations.md)."""

from prometheus_client import Counter

GROUP_EPOCH_BUMPS = Counter(
    "group_epoch_bumps_total", "Group epoch increments (membership or device changes)"
)
GROUP_MESSAGES_SENT = Counter(
    "group_messages_sent_total", "Group messages (proto 1) stored; duplicates from retries not counted"
)
GROUP_SENDER_KEY_DISTRIBUTIONS = Counter(
    "group_sender_key_distributions_total", "Sender-key distributions (proto 11) stored"
)


class GroupStateCollector:
    """Read from the database at scrape time: sender-key envelopes unacknowledged for more than
    five minutes (one COUNT on the partial index group_skenv_unacked_idx)."""

    def collect(self):
        from datetime import timedelta

        from django.db import DatabaseError
        from django.utils import timezone
        from prometheus_client.core import GaugeMetricFamily

        from groups.selectors.messages import unacked_envelopes_older_than

        gauge = GaugeMetricFamily(
            "group_sender_key_unacked_envelopes",
            "Sender-key envelopes not acknowledged by their device after 5 minutes",
        )
        try:
            gauge.add_metric([], unacked_envelopes_older_than(timezone.now() - timedelta(minutes=5)))
        except DatabaseError:
            return
        yield gauge

    def describe(self):
        return []


state_collector = GroupStateCollector()
