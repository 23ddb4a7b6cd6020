"""/metrics exports the stored results: integrity_violations{check}, errors, last run, duration."""

from __future__ import annotations

import pytest
from django.utils import timezone

from groups.models import Participant
from ops.integrity.services import integrity_run
from ops.models import IntegrityResult
from ops.tasks import run_integrity_checks
from tests.factories import GroupFactory

pytestmark = pytest.mark.django_db


def _samples(client) -> dict[str, list[dict]]:
    resp = client.get("/metrics", HTTP_ACCEPT="application/json")
    assert resp.status_code == 200
    return resp.json()


def _value(samples: list[dict], check: str) -> float | None:
    return next((s["value"] for s in samples if s["labels"]["check"] == check), None)


def test_the_beat_task_runs_every_check_and_the_gauges_show_its_counts(client):
    group = GroupFactory()
    Participant.objects.filter(group=group).update(role="member")

    assert run_integrity_checks() == IntegrityResult.objects.count() > 0

    metrics = _samples(client)
    violations = metrics["integrity_violations"]
    assert _value(violations, "groups_without_owner") == 1
    assert _value(violations, "groups_over_capacity") == 0
    owner = next(s for s in violations if s["labels"]["check"] == "groups_without_owner")
    assert owner["labels"]["severity"] == "critical"
    assert _value(metrics["integrity_check_errors"], "groups_without_owner") == 0
    last_run = _value(metrics["integrity_check_last_run_timestamp_seconds"], "groups_without_owner")
    assert abs(last_run - timezone.now().timestamp()) < 60
    assert _value(metrics["integrity_check_duration_seconds"], "groups_without_owner") >= 0


def test_a_check_that_did_not_finish_has_an_error_gauge_and_no_count(client):
    integrity_run()
    IntegrityResult.objects.filter(check_name="groups_over_capacity").update(
        error="statement timeout (10000 ms)", violations=0
    )

    metrics = _samples(client)

    assert _value(metrics["integrity_check_errors"], "groups_over_capacity") == 1
    assert _value(metrics["integrity_violations"], "groups_over_capacity") is None
    assert _value(metrics["integrity_violations"], "groups_without_owner") == 0


def test_rows_of_checks_no_longer_registered_are_not_exported(client):
    IntegrityResult.objects.create(check_name="retired_check", severity="warning", violations=3)

    metrics = _samples(client)

    assert _value(metrics.get("integrity_violations", []), "retired_check") is None


def test_the_prometheus_text_has_the_labelled_gauge(client):
    integrity_run()

    text = client.get("/metrics").content.decode()

    assert "# TYPE integrity_violations gauge" in text
    assert 'integrity_violations{check="otpk_pool_critical",severity="critical"} 0.0' in text
