"""Two test runs on one PostgreSQL and Redis: the second is refused clearly and touches nothing of
the first (issue 13, item 5)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(settings.BASE_DIR)


def second_run(**env_overrides) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_overrides}
    return subprocess.run(  # noqa: S603 - our own interpreter and test file
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/api/test_errors_doc.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.django_db
def test_a_second_run_on_the_same_databases_is_refused_and_ends_no_connection_of_ours():
    result = second_run()

    assert result.returncode == 3, result.stdout[-2000:] + result.stderr[-2000:]
    assert "another test run is using database test_" in result.stdout + result.stderr
    with connection.cursor() as cursor:  # ours still works: nothing was terminated
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def test_a_second_run_with_its_own_databases_is_not_refused():
    base = os.environ["DATABASE_URL"].rpartition("/")[0]
    # The same Redis server, another of its 16 databases (the probe run flushes it).
    redis = urlsplit(os.environ["REDIS_URL"])
    other_db = (int(redis.path.strip("/") or 0) + 8) % 16
    result = second_run(
        DATABASE_URL=f"{base}/chatsite_lock_probe", REDIS_URL=urlunsplit(redis._replace(path=f"/{other_db}"))
    )

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
