"""Prometheus metrics of the dm app (seed 001 "Monitoring and Alerting Setup")."""

from prometheus_client import Counter, Histogram

DM_MESSAGES_SENT = Counter("dm_messages_sent", "DM messages stored (duplicates from retries not counted)")
DM_DELIVERY_LATENCY = Histogram(
    "dm_delivery_latency_seconds",
    "From a message's commit to its hand-over to the recipient device's live stream",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


class DmStateCollector:
    """Gauges read from the database at scrape time (they describe stored state, not events):
    devices with low one-time prekey pools, and the deepest per-device queues."""

    QUEUE_LABEL_LIMIT = 20  # bounded label cardinality: only the deepest queues get a series

    def describe(self):
        # Declared without samples so registering does not touch the database.
        from prometheus_client.core import GaugeMetricFamily

        yield GaugeMetricFamily(
            "e2ee_otpk_low_devices", "Active devices whose OTPK pool is below a threshold", labels=["below"]
        )
        yield GaugeMetricFamily("dm_undelivered_messages", "Queued deliveries not yet acknowledged")
        yield GaugeMetricFamily(
            "dm_device_queue_depth", "Unacknowledged deliveries of a device", labels=["device_id"]
        )
        yield GaugeMetricFamily(
            "dm_oldest_unacked_age_seconds",
            "Age of a device's oldest unacknowledged delivery",
            labels=["device_id"],
        )

    def collect(self):
        from django.conf import settings
        from django.db import DatabaseError
        from prometheus_client.core import GaugeMetricFamily

        from dm.selectors.devices import otpk_pool_summary
        from dm.selectors.messages import device_queue_stats, undelivered_count

        try:
            pools = otpk_pool_summary()
            queues = device_queue_stats(limit=self.QUEUE_LABEL_LIMIT)
            undelivered = undelivered_count()
        except DatabaseError:
            return
        low = GaugeMetricFamily(
            "e2ee_otpk_low_devices", "Active devices whose OTPK pool is below a threshold", labels=["below"]
        )
        low.add_metric([str(settings.E2EE_OTPK_CRITICAL)], pools["devices_under_5"])
        low.add_metric([str(settings.E2EE_OTPK_LOW_WATERMARK)], pools["devices_under_10"])
        yield low
        yield GaugeMetricFamily(
            "dm_undelivered_messages", "Queued deliveries not yet acknowledged", value=undelivered
        )
        depth = GaugeMetricFamily(
            "dm_device_queue_depth", "Unacknowledged deliveries of a device", labels=["device_id"]
        )
        age = GaugeMetricFamily(
            "dm_oldest_unacked_age_seconds",
            "Age of a device's oldest unacknowledged delivery",
            labels=["device_id"],
        )
        for row in queues:
            depth.add_metric([row["device_id"]], row["depth"])
            age.add_metric([row["device_id"]], row["oldest_unacked_age_seconds"])
        yield depth
        yield age


state_collector = DmStateCollector()
