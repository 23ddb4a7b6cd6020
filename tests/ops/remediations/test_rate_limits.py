"""`manage.py reset_rate_limits USERNAME | --all`: one user's windows (every scope and key form)
or every `rl:*` key go, and nothing else in Redis; a dry run removes nothing; an audit row."""

from __future__ import annotations

import pytest
from django.core.management import CommandError

from chatsite.accounts.models import SecurityEvent
from chatsite.api import throttling
from chatsite.api.redis import get_redis
from tests.factories import UserFactory
from tests.ops.remediations.helpers import audits, run

pytestmark = pytest.mark.django_db

OTHER_KEYS = ("rt:streams:u:1", "presence:online:1", "login:lock:ip:10.0.0.1", "room:abc")


def windows_of(user_id: int) -> list[str]:
    """One window of each key form a user's limits use (chatsite.api.throttling._key_of_user)."""
    throttling.hit("dm_send_min", user_id, limit=100, window_seconds=60)
    throttling.hit("bundle_fetch", f"u:{user_id}:5b7c", limit=100, window_seconds=60)
    throttling.hit("room_create", f"user-{user_id}", limit=100, window_seconds=60)
    return [
        f"rl:dm_send_min:{user_id}",
        f"rl:bundle_fetch:u:{user_id}:5b7c",
        f"rl:room_create:user-{user_id}",
    ]


def seed(redis_required):
    user, other = UserFactory(), UserFactory()
    mine = windows_of(user.pk)
    theirs = windows_of(other.pk)
    # An address whose last group is the user's id must not be taken for the user.
    throttling.hit("register", f"::{user.pk}", limit=100, window_seconds=60)
    throttling.hit("register", f"10.0.0.{user.pk}", limit=100, window_seconds=60)
    for key in OTHER_KEYS:
        redis_required.set(key, "x")
    return user, mine, theirs + [f"rl:register:::{user.pk}", f"rl:register:10.0.0.{user.pk}"]


def existing(keys) -> set[str]:
    client = get_redis()
    return {k for k in keys if client.exists(k)}


def test_reset_dry_run_lists_the_users_windows_and_removes_nothing(redis_required):
    user, mine, others = seed(redis_required)

    out = run("reset_rate_limits", user.username, "--dry-run")

    assert f"Would remove 3 rate-limit window(s) of {user.username}:" in out
    assert all(key in out for key in mine)
    assert existing(mine + others) == set(mine + others)


def test_reset_removes_only_that_users_windows(redis_required):
    user, mine, others = seed(redis_required)
    operator = UserFactory(is_staff=True)

    run("reset_rate_limits", user.username, "--yes", "--by", operator.username, "--reason", "false positive")

    assert existing(mine) == set()
    assert existing(others) == set(others)
    assert existing(OTHER_KEYS) == set(OTHER_KEYS)
    [event] = audits(SecurityEvent.Kind.RATE_LIMIT_RESET)
    assert (event.user_id, event.data["by"], event.data["removed"]) == (user.pk, operator.pk, 3)
    assert sorted(event.data["keys"]) == sorted(mine)


def test_flush_removes_every_rl_key_and_nothing_else(redis_required, settings):
    settings.RATE_LIMIT_FLUSH_BATCH = 2  # several SCAN pages and UNLINK batches
    _user, mine, others = seed(redis_required)

    out = run("reset_rate_limits", "--all", "--yes", "--reason", "storm over")

    assert existing(mine + others) == set()
    assert existing(OTHER_KEYS) == set(OTHER_KEYS)
    assert "Removed 8 rate-limit window(s) (rl:* keys only)." in out
    [event] = audits(SecurityEvent.Kind.RATE_LIMIT_RESET)
    assert (event.data["scope"], event.data["removed"]) == ("all", 8)


def test_flush_dry_run_counts_per_scope_and_removes_nothing(redis_required):
    _user, mine, others = seed(redis_required)

    out = run("reset_rate_limits", "--all", "--dry-run")

    assert "8 key(s)" in out and "  dm_send_min: 2" in out and "  register: 2" in out
    assert existing(mine + others) == set(mine + others)
    assert audits(SecurityEvent.Kind.RATE_LIMIT_RESET) == []


def test_a_username_or_all_is_required():
    with pytest.raises(CommandError, match="USERNAME or --all"):
        run("reset_rate_limits", "--yes")
