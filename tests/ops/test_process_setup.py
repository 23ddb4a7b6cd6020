"""What a process does with the configuration `cp .env.example .env` gives it (issue 13, items 6
and 7): an empty PROMETHEUS_MULTIPROC_DIR is off, a missing secret is one clear line, and gauges
that describe the live service come from live processes only."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from django.conf import settings

ROOT = Path(settings.BASE_DIR)


def run(args: list[str], *, cwd: Path, **env_overrides) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_overrides}
    return subprocess.run(  # noqa: S603 - our own interpreter and scripts
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_an_empty_multiprocess_dir_writes_no_metric_files_into_the_working_directory(tmp_path):
    result = run([str(ROOT / "manage.py"), "check"], cwd=tmp_path, PROMETHEUS_MULTIPROC_DIR="")

    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_missing_secret_is_one_clear_line_not_a_traceback(tmp_path):
    result = run(
        [str(ROOT / "manage.py"), "createsuperuser", "--noinput", "--username", "x"],
        cwd=tmp_path,
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY="",
    )

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "chatsite: configuration error: DJANGO_SECRET_KEY is not set: production (DJANGO_DEBUG=false) "
        "needs a secret; set it in the environment or in .env (see .env.example)"
    ]


def test_redis_ready_of_a_process_that_has_exited_does_not_count(tmp_path):
    metrics_dir = tmp_path / "multiproc"
    metrics_dir.mkdir()
    setup = "import django; django.setup(); from chatsite.metrics import REDIS_READY\n"
    # A one-off command saw Redis down and exited (a finished `manage.py dm_trace`, a crash).
    finished = run(["-c", setup + "REDIS_READY.set(0)"], cwd=ROOT, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    assert finished.returncode == 0, finished.stderr
    # The serving process sees Redis up and is scraped.
    scrape = textwrap.dedent(
        """
        REDIS_READY.set(1)
        from ops.views import _registry
        [family] = [m for m in _registry().collect() if m.name == "redis_ready"]
        print([s.value for s in family.samples])
        """
    )
    serving = run(["-c", setup + scrape], cwd=ROOT, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))

    assert serving.returncode == 0, serving.stderr
    assert serving.stdout.strip().splitlines()[-1] == "[1.0]"
