"""`manage.py integrity_check [--json] [--check NAME]`: its output and its exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from groups.models import Participant
from ops.integrity import registry
from ops.models import IntegrityResult
from tests.factories import DeviceFactory, GroupFactory


def _orphan_a_group():
    group = GroupFactory()
    Participant.objects.filter(group=group).update(role="member")
    return group


def _run(*args) -> str:
    out = StringIO()
    call_command("integrity_check", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_json_lists_every_check_and_a_critical_failure_exits_1_with_samples():
    group = _orphan_a_group()
    out = StringIO()

    with pytest.raises(CommandError) as failed:
        call_command("integrity_check", "--json", stdout=out)

    assert failed.value.returncode == 1
    assert "groups_without_owner" in str(failed.value)
    report = json.loads(out.getvalue())
    assert report["ok"] is False
    checks = {c["name"]: c for c in report["checks"]}
    assert list(checks) == [c.name for c in registry.CHECKS]
    owner = checks["groups_without_owner"]
    assert owner["violations"] == 1 and owner["failed"] is True and owner["error"] is None
    assert owner["samples"] == [str(group.pk)]
    assert owner["remediation"] == "manage.py promote_group_owner GROUP_ID"
    assert owner["runbook"] == "seed 000 §Owner leaves group (409 OWNER_REQUIRED)"
    assert checks["groups_over_capacity"]["failed"] is False


@pytest.mark.django_db
def test_a_warning_alone_exits_0():
    DeviceFactory(one_time_prekeys=7)  # below 10 (warning), not below 5 (critical)

    report = json.loads(_run("--json"))

    assert report["ok"] is True
    low = next(c for c in report["checks"] if c["name"] == "otpk_pool_low")
    assert low["violations"] == 1 and low["failed"] is True


@pytest.mark.django_db
def test_check_runs_and_stores_only_the_named_checks():
    _orphan_a_group()

    report = json.loads(_run("--json", "--check", "otpk_pool_low", "--check", "groups_over_capacity"))

    assert [c["name"] for c in report["checks"]] == ["otpk_pool_low", "groups_over_capacity"]
    assert set(IntegrityResult.objects.values_list("check_name", flat=True)) == {
        "otpk_pool_low",
        "groups_over_capacity",
    }


@pytest.mark.django_db
def test_an_unknown_check_name_is_refused():
    with pytest.raises(CommandError, match="invalid choice"):
        _run("--check", "no_such_check")


@pytest.mark.django_db
def test_plain_output_names_each_check_and_the_fix_of_a_failing_one():
    _orphan_a_group()

    with pytest.raises(CommandError):
        call_command("integrity_check", stdout=(out := StringIO()))

    lines = out.getvalue().splitlines()
    assert len(lines) == len(registry.CHECKS)
    owner = next(line for line in lines if "groups_without_owner" in line)
    assert "FAIL" in owner and "1 found" in owner and "fix: manage.py promote_group_owner GROUP_ID" in owner


@pytest.mark.django_db(transaction=True)
def test_the_process_exit_status_is_1_on_a_critical_failure_and_0_when_clean():
    """The real process, as cron or an on-call engineer runs it, against the committed test data."""
    db = connection.settings_dict
    login = f"{db['USER']}:{db['PASSWORD'] or ''}"
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{login}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
    }

    def run() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", "integrity_check", "--check", "groups_without_owner"],
            cwd=settings.BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    clean = run()
    assert clean.returncode == 0, clean.stderr
    _orphan_a_group()
    failed = run()
    assert failed.returncode == 1
    assert "critical integrity checks failed: groups_without_owner" in failed.stderr
