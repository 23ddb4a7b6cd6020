"""The registry is the single source: docs generated from it, its indexes and runbook sections
real, its schedule naming a real task."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import get_commands, load_command_class
from django.db import connection

from ops.integrity import registry
from ops.integrity.docs import render_table

SEEDS = Path(settings.BASE_DIR).parent / "shared" / "seeds"


def test_docs_operations_md_has_the_generated_table():
    on_disk = (Path(settings.BASE_DIR) / "docs" / "operations.md").read_text()
    assert render_table() in on_disk, (
        "paste `python manage.py integrity_check --doc` into docs/operations.md, 'Integrity checks'"
    )


def test_the_issue_lists_checks_are_all_registered():
    assert set(registry.BY_NAME) >= {
        "groups_without_owner",
        "groups_over_capacity",
        "group_participants_duplicate",
        "group_invites_over_max_uses",
        "orphaned_group_delivery",
        "orphaned_status_audience",
        "orphaned_status_views",
        "orphaned_dm_delivery",
        "dm_messages_duplicate",
        "group_messages_unexpected_epoch",
        "status_posts_expired_uncleaned",
        "presence_stuck_online",
        "otpk_pool_critical",
        "otpk_pool_low",
        "signed_prekey_stale",
        "identity_key_changes_burst",
        "dm_undelivered_stale",
        "sender_keys_unacked",
    }
    assert registry.get("groups_over_capacity").severity == registry.CRITICAL
    assert registry.get("otpk_pool_critical").severity == registry.CRITICAL
    assert registry.get("otpk_pool_low").severity == registry.WARNING


def test_every_remediation_is_a_command_line_its_command_accepts():
    """GROUP_ID-style placeholders stand for a value the operator fills in."""
    commands = get_commands()
    for check in (c for c in registry.CHECKS if c.remediation):
        name, *args = check.remediation.split()
        assert name in commands, check.name
        if name == "run_job":  # a beat job that repairs it
            assert args[0] in settings.CELERY_BEAT_SCHEDULE, check.name
        filled = [str(uuid.uuid4()) if arg.isupper() else arg for arg in args]
        load_command_class(commands[name], name).create_parser("manage.py", name).parse_args(filled)
    orphans = [c for c in registry.CHECKS if c.name.startswith("orphaned_") and c.remediation]
    assert {c.remediation for c in orphans} == {
        f"clear_orphans --kind {c.name.removeprefix('orphaned_')}" for c in orphans
    }


@pytest.mark.django_db
def test_every_named_index_exists_on_the_table_the_check_reads():
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, tablename FROM pg_indexes WHERE schemaname = 'public'")
        tables = dict(cursor.fetchall())
    for check in registry.CHECKS:
        if check.index:
            assert check.index in tables, f"{check.name}: no index {check.index}"
            assert re.search(rf"\b{tables[check.index]}\b", check.offending_sql), check.name


@pytest.mark.skipif(not SEEDS.is_dir(), reason="the runbooks (../shared/seeds) are not beside this checkout")
def test_every_runbook_reference_names_a_section_of_that_runbook():
    texts = {path.name[:3]: path.read_text() for path in SEEDS.glob("0*.txt")}
    for check in registry.CHECKS:
        match = re.fullmatch(r"seed (\d{3}) §(.+)", check.runbook)
        assert match, check.name
        seed, section = match.groups()
        assert re.search(rf"^#+ (Symptom: )?{re.escape(section)}$", texts[seed], re.M), check


def test_beat_runs_the_registry_on_its_interval():
    from chatsite.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["ops-integrity-checks"]
    assert entry["task"] == "ops.tasks.run_integrity_checks"
    assert entry["schedule"] == float(settings.INTEGRITY_CHECK_INTERVAL_S)
    app.loader.import_default_modules()
    assert entry["task"] in app.tasks
