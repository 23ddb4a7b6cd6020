"""integrity_run: each check bounded by its statement timeout, a failing check recorded without
stopping the others, results stored one row per check."""

from __future__ import annotations

import dataclasses

import psycopg
import pytest
from django.db import connection

from groups.models import Participant
from ops.integrity import registry
from ops.integrity.registry import CRITICAL, WARNING, Check
from ops.integrity.services import integrity_run
from ops.models import IntegrityResult
from tests.factories import GroupFactory
from tests.ops.integrity.conftest import sql

pytestmark = pytest.mark.django_db

SLEEPER = Check(
    name="test_sleeper",
    severity=CRITICAL,
    finds="nothing: sleeps",
    subject="none",
    offending_sql="SELECT 1 AS id FROM pg_sleep(2)",
    runbook="tests",
    index=None,
    cost="two seconds",
)
BROKEN = Check(
    name="test_broken",
    severity=WARNING,
    finds="nothing: its table does not exist",
    subject="none",
    offending_sql="SELECT id FROM no_such_table",
    runbook="tests",
    index=None,
    cost="none",
)


def test_a_check_over_the_statement_timeout_is_an_error_and_the_next_check_still_runs():
    group = GroupFactory()
    Participant.objects.filter(group=group).update(role="admin")

    slow, owners = integrity_run(
        checks=[SLEEPER, registry.get("groups_without_owner")], timeout_ms=100, record=False
    )

    assert slow.violations is None
    assert slow.error == "statement timeout (100 ms)"
    assert slow.duration_ms < 1500
    assert slow.critical_failure
    assert owners.error == ""
    assert owners.violations == 1


def test_a_failing_query_is_recorded_with_its_error_and_counts_as_failed():
    broken, clean = integrity_run(checks=[BROKEN, registry.get("groups_over_capacity")], record=False)

    assert broken.error.startswith("UndefinedTable")
    assert broken.failed and not broken.critical_failure  # a warning
    assert clean.violations == 0 and not clean.failed


def test_the_callers_statement_timeout_is_restored_after_each_check():
    sql("SET LOCAL statement_timeout = '7s'")
    integrity_run(checks=[registry.get("groups_without_owner")], timeout_ms=1234, record=False)

    assert sql("SHOW statement_timeout") == [("7s",)]


@pytest.fixture
def table_locked_elsewhere():
    """A second, real connection holds an ACCESS EXCLUSIVE lock on `groups` (a long migration)."""
    db = connection.settings_dict
    other = psycopg.connect(
        dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"] or None, host=db["HOST"], port=db["PORT"]
    )
    other.execute("LOCK TABLE groups IN ACCESS EXCLUSIVE MODE NOWAIT")
    yield
    other.rollback()
    other.close()


def test_a_check_blocked_by_a_lock_times_out_and_the_others_run(table_locked_elsewhere):
    outcomes = integrity_run(
        checks=[registry.get("groups_without_owner"), registry.get("otpk_pool_critical")],
        timeout_ms=200,
        record=False,
    )

    assert [o.error for o in outcomes] == ["statement timeout (200 ms)", ""]
    assert outcomes[1].violations == 0


def test_every_run_stores_one_row_per_check():
    integrity_run()
    group = GroupFactory()
    Participant.objects.filter(group=group).update(role="member")
    integrity_run(checks=[registry.get("groups_without_owner")])

    rows = {r.check_name: r for r in IntegrityResult.objects.all()}
    assert set(rows) == set(registry.BY_NAME)
    assert rows["groups_without_owner"].violations == 1
    assert rows["groups_without_owner"].checked_at > rows["groups_over_capacity"].checked_at
    assert rows["groups_without_owner"].severity == CRITICAL


def test_an_error_is_stored_in_the_result_row():
    timed_out = dataclasses.replace(SLEEPER, name="groups_over_capacity")  # a registered name
    integrity_run(checks=[timed_out], timeout_ms=50)

    row = IntegrityResult.objects.get(check_name="groups_over_capacity")
    assert row.error == "statement timeout (50 ms)"
    assert row.violations == 0


def test_samples_are_listed_only_when_asked():
    group = GroupFactory()
    Participant.objects.filter(group=group).update(role="member")
    check = registry.get("groups_without_owner")

    [plain] = integrity_run(checks=[check], record=False)
    [listed] = integrity_run(checks=[check], samples=5, record=False)

    assert plain.samples == []
    assert listed.samples == [str(group.pk)]
