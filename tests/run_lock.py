"""One test run per test database and Redis database at a time (tests/conftest.py calls these).

Two runs on the same `test_<name>` database and Redis db would drop, flush and terminate each
other's state. At session start the run takes two PostgreSQL advisory locks, keyed on its test
database name and on its Redis URL, on a connection it keeps open until the session ends (a killed
run's locks go with its connection). A second run on either is refused at once, with what to set
instead; it never touches the first run's database, Redis or connections.

Connections of the suite (and of the servers it starts) carry the application name
`chatsite-tests`. Holding the lock, a run knows that any such connection left on its test database
is a leftover of a killed run, and only those are terminated, never anyone else's.
"""

from __future__ import annotations

import os

import psycopg

APPLICATION_NAME = "chatsite-tests"
_held: psycopg.Connection | None = None


def _urls() -> tuple[str, str, str]:
    db_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    base, _, name = db_url.rpartition("/")
    return base, f"test_{name.split('?')[0]}", redis_url


def acquire() -> str | None:
    """Take the run's locks; return why not (another run holds them), or None."""
    global _held
    os.environ.setdefault("PGAPPNAME", APPLICATION_NAME)  # libpq: every connection of this run
    base, test_db, redis_url = _urls()
    if not base.startswith("postgres"):
        return None  # not PostgreSQL: nothing shared to protect
    conn = psycopg.connect(f"{base}/postgres", autocommit=True, application_name=f"{APPLICATION_NAME}-lock")
    got_db, got_redis = conn.execute(
        "SELECT pg_try_advisory_lock(hashtext(%s)), pg_try_advisory_lock(hashtext(%s))",
        [f"chatsite-tests:db:{test_db}", f"chatsite-tests:redis:{redis_url}"],
    ).fetchone()
    if not (got_db and got_redis):
        conn.close()
        busy = " and ".join(
            what
            for what, got in ((f"database {test_db}", got_db), (f"Redis {redis_url}", got_redis))
            if not got
        )
        return (
            f"another test run is using {busy}. Wait for it, or give this run its own: e.g. "
            "DATABASE_URL=postgres://postgres@127.0.0.1:5432/chatsite_2 "
            "REDIS_URL=redis://127.0.0.1:6379/14 make test"
        )
    _held = conn
    # Leftovers of a killed run of ours (a server it started, a worker thread's connection): only
    # connections named as ours, on our test database, which no live run can hold while we do.
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = %s AND application_name = %s AND pid <> pg_backend_pid()",
        [test_db, APPLICATION_NAME],
    )
    return None


def release() -> None:
    global _held
    if _held is not None:
        _held.close()
        _held = None
