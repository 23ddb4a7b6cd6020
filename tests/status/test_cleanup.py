"""The expiry cleanup (status.tasks): expired posts with their audience and views, in batches,
idempotent; metrics of posts created, active, expired and cleaned, views, average audience and
failing cleanups; the beat entry."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.conf import settings
from django.utils import timezone
from prometheus_client import REGISTRY

from status import tasks
from status.metrics import state_collector
from status.models import StatusAudience, StatusPost, StatusView
from tests.status.helpers import add_contacts, people, post_id

pytestmark = pytest.mark.django_db


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def _expire(pid, seconds_ago: int = 1) -> None:
    StatusPost.objects.filter(pk=pid).update(expires_at=timezone.now() - timedelta(seconds=seconds_ago))


def test_cleanup_deletes_expired_posts_with_audience_and_views_in_batches():
    alice, bob, carol = people(3)
    add_contacts(alice, bob, carol)
    expired = [post_id(alice) for _ in range(5)]
    live = post_id(alice)
    for i, pid in enumerate(expired):
        bob.client.post(f"/status/posts/{pid}/views")
        _expire(pid, seconds_ago=i + 1)
    cleaned_before = sample("status_posts_cleaned_total")

    first = tasks.status_cleanup(batch_size=2, max_batches=2)  # 4 of 5, oldest expiry first

    assert first == {"posts_deleted": 4, "audience_deleted": 8, "views_deleted": 4}
    assert list(StatusPost.objects.filter(pk__in=expired).values_list("pk", flat=True)) == [
        __import__("uuid").UUID(expired[0])
    ]
    assert tasks.status_cleanup(batch_size=2)["posts_deleted"] == 1
    assert tasks.status_cleanup(batch_size=2) == {
        "posts_deleted": 0,
        "audience_deleted": 0,
        "views_deleted": 0,
    }
    assert StatusPost.objects.filter(pk=live).exists()
    assert not StatusAudience.objects.filter(post_id__in=expired).exists()
    assert not StatusView.objects.filter(post_id__in=expired).exists()
    assert sample("status_posts_cleaned_total") - cleaned_before == 5


def test_cleanup_takes_now_so_the_boundary_is_exact():
    alice, bob = people(2)
    add_contacts(alice, bob)
    pid = post_id(alice)
    expires_at = StatusPost.objects.get(pk=pid).expires_at
    assert tasks.status_cleanup(now=expires_at - timedelta(seconds=1))["posts_deleted"] == 0
    assert tasks.status_cleanup(now=expires_at)["posts_deleted"] == 1


def test_a_failing_cleanup_shows_in_a_metric_and_a_success_sets_the_timestamp():
    failures = sample("status_cleanup_failures_total")
    with mock.patch.object(tasks, "status_cleanup", side_effect=RuntimeError("db down")):
        with pytest.raises(RuntimeError):
            tasks.run_cleanup()
    assert sample("status_cleanup_failures_total") - failures == 1

    tasks.run_cleanup()
    last = sample("status_cleanup_last_success_timestamp_seconds")
    assert abs(last - timezone.now().timestamp()) < 60


def test_the_celery_task_and_beat_entry():
    assert (
        settings.CELERY_BEAT_SCHEDULE["status-cleanup-expired"]["task"]
        == "status.tasks.cleanup_expired_posts"
    )
    assert tasks.cleanup_expired_posts.name == "status.tasks.cleanup_expired_posts"
    assert tasks.cleanup_expired_posts.run() == {
        "posts_deleted": 0,
        "audience_deleted": 0,
        "views_deleted": 0,
    }


def test_metrics_count_posts_views_active_expired_and_average_audience():
    alice, bob, carol = people(3)
    add_contacts(alice, bob, carol)
    created, views = sample("status_posts_created_total"), sample("status_views_total")
    # The counters move after commit; this test runs in a transaction, so call the services' hooks.
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):
        p1 = post_id(alice)  # audience 2
        post_id(alice, "only", [bob])  # audience 1
        p3 = post_id(alice, "only", [])  # audience 0, expired below
        bob.client.post(f"/status/posts/{p1}/views")
    _expire(p3)

    assert sample("status_posts_created_total") - created == 3
    assert sample("status_views_total") - views == 1
    gauges = {m.name: m.samples[0].value for m in state_collector.collect()}
    assert gauges["status_posts_active"] == 2
    assert gauges["status_posts_expired"] == 1
    assert gauges["status_audience_size_avg"] == 1.5
