"""Say clearly what to start when the test suite's PostgreSQL or Redis is not reachable."""

import os
import sys

import psycopg
import redis

db_url = os.environ["DATABASE_URL"]
redis_url = os.environ["REDIS_URL"]
problems = []
try:
    base, _, name = db_url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", connect_timeout=3, autocommit=True) as conn:
        # The suite's own database (tests use test_<name>; the migrations check reads <name>).
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
        # Leftover sessions of an interrupted run are ended by the run itself, once it holds the
        # test database's lock, and only those named as ours (tests/run_lock.py).
except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
    problems.append(
        f"PostgreSQL is not reachable at {db_url} ({type(exc).__name__}).\n"
        "  Start it: `docker compose up -d postgres` (then "
        "DATABASE_URL=postgres://chatsite:chatsite@127.0.0.1:5432/chatsite), or on Debian "
        "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`,\n"
        "  or point DATABASE_URL at a server where the user may create databases."
    )
try:
    redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
except Exception as exc:  # noqa: BLE001
    problems.append(
        f"Redis is not reachable at {redis_url} ({type(exc).__name__}).\n"
        "  Start it: `docker compose up -d redis`, or "
        '`redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no`.'
    )
if problems:
    print("The test suite needs a real PostgreSQL and Redis:\n" + "\n".join(problems), file=sys.stderr)
    sys.exit(2)
