"""Helpers for the integrity-check tests: they build the offending state in the real database.

States a constraint forbids are made the way they happen in production: the constraint dropped
(rolled back with the test's transaction), or foreign keys skipped with
`session_replication_role = replica` as a restore or manual SQL with triggers disabled does.
"""

from __future__ import annotations

import uuid

import pytest
from django.db import connection

from ops.integrity import registry
from ops.integrity.services import integrity_run


def sql(statement: str, params: list | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])
        return cursor.fetchall() if cursor.description else []


def drop_constraint(table: str, name: str) -> None:
    """Inside the test's transaction: rolled back with it. The deferred foreign-key checks of rows
    made so far run first (ALTER TABLE refuses a table with pending trigger events)."""
    sql("SET CONSTRAINTS ALL IMMEDIATE")
    sql(f"ALTER TABLE {table} DROP CONSTRAINT {name}")


def delete_skipping_foreign_keys(table: str, pk_value) -> None:
    """Delete a parent row as a restore or manual SQL with triggers disabled would: its children
    stay (every foreign key is enforced by a trigger, which `replica` skips). The deferred checks
    of the rows made so far run first, or the test's teardown would run them against the gap."""
    sql("SET CONSTRAINTS ALL IMMEDIATE")
    sql("SET LOCAL session_replication_role = replica")
    sql(f"DELETE FROM {table} WHERE id = %s", [pk_value])
    sql("SET LOCAL session_replication_role = origin")


def violations(name: str) -> int:
    """Run one registered check (not recorded) and return its count; fails on an error."""
    [outcome] = integrity_run(checks=[registry.get(name)], record=False)
    assert outcome.error == "", outcome.error
    return outcome.violations


def samples(name: str) -> list[str]:
    [outcome] = integrity_run(checks=[registry.get(name)], samples=50, record=False)
    return outcome.samples


def insert_group_message(group_id, *, epoch: int, seq: int, proto: int = 1, device_id=None) -> int:
    return sql(
        "INSERT INTO group_messages (seq, group_epoch, proto, sender_key_id, client_message_id, "
        "ciphertext, created_at, group_id, sender_device_id, sender_user_id) "
        "VALUES (%s, %s, %s, 'k1', %s, '', now(), %s, %s, NULL) RETURNING id",
        [seq, epoch, proto, uuid.uuid4().hex, group_id, device_id],
    )[0][0]


@pytest.fixture
def group():
    from tests.factories import GroupFactory

    return GroupFactory()
