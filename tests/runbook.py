"""Running a runbook's SQL as an on-call engineer would in psql: the text unchanged, only its
<placeholders> filled in (values are ours: a UUID, an integer or a URL-safe code)."""

from __future__ import annotations

from django.db import connection


def run_runbook_sql(sql: str, **placeholders) -> list[tuple]:
    """The rows a runbook query returns (for a statement without rows: [(rowcount,)]). Fails if a
    <placeholder> is left unfilled."""
    for name, value in placeholders.items():
        sql = sql.replace(f"<{name}>", str(value))
    assert "<" not in sql.replace("< NOW()", "").replace("<=", ""), sql
    with connection.cursor() as cursor:
        # No parameters: the text goes to PostgreSQL as typed (no %-placeholder parsing).
        cursor.execute(sql)
        return cursor.fetchall() if cursor.description else [(cursor.rowcount,)]
