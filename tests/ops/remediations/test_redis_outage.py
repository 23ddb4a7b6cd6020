"""The Redis-backed commands say plainly that Redis is unavailable and exit non-zero (a
CommandError) instead of a traceback."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from chatsite.api.redis import get_redis

pytestmark = pytest.mark.django_db


@pytest.fixture
def dead_redis(settings):
    get_redis.cache_clear()
    settings.REDIS_URL = "redis://127.0.0.1:9899/0"  # nothing listens there
    yield
    get_redis.cache_clear()


def test_connections_report_says_redis_is_unavailable(dead_redis):
    with pytest.raises(CommandError, match="Redis unavailable"):
        call_command("connections_report", stdout=io.StringIO())


@pytest.mark.parametrize("arguments", [("--all",), ("--all", "--dry-run")])
def test_reset_rate_limits_says_redis_is_unavailable(dead_redis, arguments):
    with pytest.raises(CommandError, match="Redis unavailable"):
        call_command("reset_rate_limits", *arguments, "--yes", "--reason", "x", stdout=io.StringIO())
