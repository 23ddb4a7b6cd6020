"""Times every SQL statement into db_query_duration_seconds (chatsite/metrics.py), the input of
the "database p99 > 200 ms" alert. The settings' ENGINE is Django's own PostgreSQL backend (with
its connection pool), not django-prometheus' wrapper, so django_db_* are not exported; this
execute wrapper is the one place statements are timed instead. Cost: one perf_counter pair and
one histogram observation per statement."""

from __future__ import annotations

import time

from chatsite.metrics import DB_QUERY_DURATION


def _timed(execute, sql, params, many, context):
    started = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        DB_QUERY_DURATION.observe(time.perf_counter() - started)


def install(sender=None, connection=None, **_kwargs) -> None:
    """connection_created receiver: wrap the new connection's statements (once per connection).
    First in the list, never last: a connection opened inside `with connection.execute_wrapper(w)`
    must leave that block's pop() removing `w`, not this one."""
    if _timed not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, _timed)
