"""Prometheus metrics of the dm app (seed 001 "Monitoring and Alerting Setup")."""

from prometheus_client import Counter, Histogram

DM_MESSAGES_SENT = Counter("dm_messages_sent", "DM messages stored (duplicates from retries not counted)")
DM_DELIVERY_LATENCY = Histogram(
    "dm_delivery_latency_seconds",
    "From a message's commit to its hand-over to the recipient device's live stream",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
DM_STREAM_PAUSES = Counter(
    "dm_stream_pauses",
    "Device streams that reached DM_MAX_UNACKED_PER_STREAM and paused until acknowledged",
)

# Upper bounds of the queue-depth buckets; "+Inf" is added (every device with a queue).
QUEUE_DEPTH_BUCKETS = (1, 10, 100, 1000, 10000)

_HELP = {
    "e2ee_otpk_low_devices": "Active devices whose OTPK pool is below a threshold",
    "dm_undelivered_messages": "Queued deliveries not yet acknowledged",
    "dm_device_queue_depth": (
        "Devices with unacknowledged deliveries whose queue depth is <= le (cumulative, no device ids)"
    ),
    "dm_device_queue_depth_max": "Deepest unacknowledged queue of any device",
    "dm_oldest_unacked_age_seconds": "Age of the oldest unacknowledged delivery of any device (0: none)",
}


def queue_depth_summary() -> dict:
    """Per-device queue depths aggregated in the database: cumulative bucket counts, the deepest
    queue and the oldest unacknowledged delivery. No device id leaves this function, and the
    result has the same size however many devices are behind."""
    from django.db.models import Count, Max, Min, Q
    from django.utils import timezone

    from dm.models import Delivery

    pending = Delivery.objects.filter(delivered_at__isnull=True)
    per_device = pending.values("device_id").annotate(depth=Count("id"))
    buckets = {f"le_{le}": Count("device_id", filter=Q(depth__lte=le)) for le in QUEUE_DEPTH_BUCKETS}
    agg = per_device.aggregate(devices=Count("device_id"), max_depth=Max("depth"), **buckets)
    oldest = pending.aggregate(oldest=Min("created_at"))["oldest"]
    return {
        "buckets": [(str(le), agg[f"le_{le}"]) for le in QUEUE_DEPTH_BUCKETS] + [("+Inf", agg["devices"])],
        "max_depth": agg["max_depth"] or 0,
        "oldest_unacked_age_seconds": (timezone.now() - oldest).total_seconds() if oldest else 0.0,
    }


class DmStateCollector:
    """Gauges read from the database at scrape time (they describe stored state, not events):
    devices with low one-time prekey pools, and how far behind the device queues are. /metrics
    may be scraped from outside, so queues are aggregated: bucket counts and maxima, never a
    series per device (which would say who is offline, with unbounded label cardinality)."""

    def _families(self):
        from prometheus_client.core import GaugeMetricFamily

        return {
            "e2ee_otpk_low_devices": GaugeMetricFamily(
                "e2ee_otpk_low_devices", _HELP["e2ee_otpk_low_devices"], labels=["below"]
            ),
            "dm_undelivered_messages": GaugeMetricFamily(
                "dm_undelivered_messages", _HELP["dm_undelivered_messages"]
            ),
            "dm_device_queue_depth": GaugeMetricFamily(
                "dm_device_queue_depth", _HELP["dm_device_queue_depth"], labels=["le"]
            ),
            "dm_device_queue_depth_max": GaugeMetricFamily(
                "dm_device_queue_depth_max", _HELP["dm_device_queue_depth_max"]
            ),
            "dm_oldest_unacked_age_seconds": GaugeMetricFamily(
                "dm_oldest_unacked_age_seconds", _HELP["dm_oldest_unacked_age_seconds"]
            ),
        }

    def describe(self):
        # Declared without samples so registering does not touch the database.
        yield from self._families().values()

    def collect(self):
        from django.conf import settings
        from django.db import DatabaseError

        from dm.selectors.devices import otpk_pool_summary
        from dm.selectors.messages import undelivered_count

        try:
            pools = otpk_pool_summary()
            queues = queue_depth_summary()
            undelivered = undelivered_count()
        except DatabaseError:
            return
        families = self._families()
        low = families["e2ee_otpk_low_devices"]
        low.add_metric([str(settings.E2EE_OTPK_CRITICAL)], pools["devices_under_5"])
        low.add_metric([str(settings.E2EE_OTPK_LOW_WATERMARK)], pools["devices_under_10"])
        families["dm_undelivered_messages"].add_metric([], undelivered)
        for le, count in queues["buckets"]:
            families["dm_device_queue_depth"].add_metric([le], count)
        families["dm_device_queue_depth_max"].add_metric([], queues["max_depth"])
        families["dm_oldest_unacked_age_seconds"].add_metric([], queues["oldest_unacked_age_seconds"])
        yield from families.values()


state_collector = DmStateCollector()
