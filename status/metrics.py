"""Prometheus metrics of the status app (docs/status.md, "Metrics")."""

from prometheus_client import Counter, Gauge

STATUS_POSTS_CREATED = Counter("status_posts_created_total", "Status posts created")
STATUS_VIEWS = Counter("status_views_total", "Status views recorded (first view of a post per viewer)")
STATUS_POSTS_CLEANED = Counter(
    "status_posts_cleaned_total", "Expired status posts deleted by the cleanup task"
)
STATUS_CLEANUP_FAILURES = Counter("status_cleanup_failures_total", "Status cleanup runs that failed")
STATUS_CLEANUP_LAST_SUCCESS = Gauge(
    "status_cleanup_last_success_timestamp_seconds",
    "Unix time of the last status cleanup run that finished",
    multiprocess_mode="max",
)


class StatusStateCollector:
    """Read from the database at scrape time: active posts, expired posts not cleaned yet, and
    the average audience size of active posts (status.selectors.posts.metrics_summary)."""

    GAUGES = (
        ("status_posts_active", "Status posts not expired", "active_posts"),
        ("status_posts_expired", "Expired status posts the cleanup has not deleted yet", "expired_posts"),
        ("status_audience_size_avg", "Average audience size of active status posts", "avg_audience_size"),
    )

    def collect(self):
        from django.db import DatabaseError
        from prometheus_client.core import GaugeMetricFamily

        from status.selectors.posts import metrics_summary

        try:
            summary = metrics_summary()
        except DatabaseError:
            return
        for name, documentation, key in self.GAUGES:
            gauge = GaugeMetricFamily(name, documentation)
            gauge.add_metric([], summary[key])
            yield gauge

    def describe(self):
        return []


state_collector = StatusStateCollector()
