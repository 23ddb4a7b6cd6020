"""Shared by the remediation tests: run a command and capture what it printed; leave rows behind
their parent the way only manual SQL can (foreign-key triggers off for one statement)."""

from __future__ import annotations

from contextlib import contextmanager
from io import StringIO

from django.core.management import call_command
from django.db import connection

from chatsite.accounts.models import SecurityEvent


def run(name: str, *args: str) -> str:
    out = StringIO()
    call_command(name, *args, stdout=out, stderr=out)
    return out.getvalue()


@contextmanager
def foreign_keys_off():
    """`session_replication_role = replica` skips foreign-key triggers (the integrity registry's
    note): rows written meanwhile may name parents that do not exist. Inside the test's
    transaction, so it ends with it."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL session_replication_role = origin")


def audits(kind: str) -> list[SecurityEvent]:
    return list(SecurityEvent.objects.filter(kind=kind).order_by("pk"))
