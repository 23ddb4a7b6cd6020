"""Prometheus metrics of the groups app (documented in docs/groups.md, "Metrics")."""

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
# Seed 000 "alert if distribution failures > 5 %": a distribution refused (stale epoch, envelopes
# not matching the member devices, ...), by error code; the ratio to the stored ones is the alert.
GROUP_SENDER_KEY_DISTRIBUTION_FAILURES = Counter(
    "group_sender_key_distribution_failures_total",
    "Sender-key distributions (proto 11) refused, by error code",
    ["code"],
)


class GroupStateCollector:
    """Read from the database at scrape time, the figures of GET /groups/metrics as gauges (a few
    indexed COUNTs: groups.selectors.messages.metrics_summary)."""

    GAUGES = (
        ("groups_total", "Groups", lambda m: m["totals"]["groups"]),
        ("group_participants_total", "Non-banned group participants", lambda m: m["totals"]["participants"]),
        (
            "groups_near_capacity",
            "Groups at 95 % of GROUP_MAX_PARTICIPANTS or more (the runbook warns at 95 members)",
            lambda m: m["groups_near_capacity"],
        ),
        (
            "group_epoch_bumps_last_hour",
            "Group epoch increments in the last hour, all groups",
            lambda m: m["epoch_bumps_last_hour"],
        ),
        (
            "group_epoch_bumps_last_hour_max",
            "The most epoch increments of any one group in the last hour (the runbook alerts above 10)",
            lambda m: max((g["bumps"] for g in m["epoch_churn_last_hour"]), default=0),
        ),
        (
            "group_invite_redemptions_last_hour",
            "Invite redemptions in the last hour",
            lambda m: m["invite_redemptions_last_hour"],
        ),
        (
            "group_sender_key_unacked_envelopes",
            "Sender-key envelopes not acknowledged by their device after 5 minutes",
            lambda m: m["unacked_envelopes_older_than_5m"],
        ),
    )

    def collect(self):
        from django.db import DatabaseError
        from prometheus_client.core import GaugeMetricFamily

        from groups.selectors.messages import metrics_summary

        try:
            summary = metrics_summary()
        except DatabaseError:
            return
        for name, documentation, value in self.GAUGES:
            gauge = GaugeMetricFamily(name, documentation)
            gauge.add_metric([], value(summary))
            yield gauge

    def describe(self):
        return []


state_collector = GroupStateCollector()
