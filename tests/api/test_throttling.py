"""The sliding-window limiter: exact in Redis across processes, per-process when Redis is down."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from django.conf import settings

from chatsite.api import throttling
from chatsite.api.errors import ApiError
from chatsite.api.redis import get_redis
from chatsite.metrics import REDIS_ERRORS
from tests.accounts.conftest import FakeClock

ROOT = Path(__file__).resolve().parents[2]
DEAD_REDIS_URL = "redis://127.0.0.1:6399/0"  # nothing listens here


def ratelimit_redis_errors() -> float:
    # From the metric itself: REGISTRY.get_sample_value would also run dm's collectors, which
    # query the database this module does not otherwise need.
    for family in REDIS_ERRORS.collect():
        for sample in family.samples:
            if sample.name == "redis_errors_total" and sample.labels == {"component": "ratelimit"}:
                return sample.value
    return 0.0


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    """Moves the limiter's windows forward without sleeping."""
    fake = FakeClock()
    monkeypatch.setattr(throttling, "clock", fake)
    return fake


@pytest.fixture
def dead_redis(settings):
    """A real Redis failure: the process's client points at a port nobody listens on."""
    get_redis.cache_clear()
    settings.REDIS_URL = DEAD_REDIS_URL
    yield
    get_redis.cache_clear()


def test_allows_limit_then_refuses_with_retry(redis_required):
    decisions = [throttling.hit("t", "k", limit=3, window_seconds=30) for _ in range(4)]

    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.count for d in decisions[:3]] == [1, 2, 3]
    assert 0 < decisions[3].retry_in_seconds <= 30


def assert_window_slides(clock: FakeClock) -> None:
    assert throttling.hit("t", "slide", limit=2, window_seconds=1).allowed
    clock.advance(0.5)
    assert throttling.hit("t", "slide", limit=2, window_seconds=1).allowed
    assert not throttling.hit("t", "slide", limit=2, window_seconds=1).allowed

    clock.advance(0.6)  # the first event left the window, the second has not

    assert throttling.hit("t", "slide", limit=2, window_seconds=1).allowed
    assert not throttling.hit("t", "slide", limit=2, window_seconds=1).allowed
    assert throttling.peek("t", "slide", window_seconds=1).retry_in_seconds == pytest.approx(0.4, abs=1e-6)


def test_window_slides(redis_required, clock):
    assert_window_slides(clock)


def test_window_slides_in_the_per_process_fallback(dead_redis, clock):
    assert_window_slides(clock)


def test_refused_hits_do_not_count(redis_required):
    for _ in range(5):
        throttling.hit("t", "refused", limit=1, window_seconds=30)

    assert throttling.peek("t", "refused", window_seconds=30).count == 1


def test_keys_are_independent(redis_required):
    assert throttling.hit("t", "a", limit=1, window_seconds=30).allowed
    assert throttling.hit("t", "b", limit=1, window_seconds=30).allowed
    assert throttling.hit("other", "a", limit=1, window_seconds=30).allowed


def test_check_raises_rate_limited_with_retry_header(redis_required):
    throttling.check("t", "check", limit=1, window_seconds=30)

    with pytest.raises(ApiError) as excinfo:
        throttling.check("t", "check", limit=1, window_seconds=30)

    err = excinfo.value
    assert err.code == "RATE_LIMITED"
    assert err.status == 429
    assert 0 < int(err.headers["X-Retry-After"]) <= 30
    assert err.body()["retry_in_seconds"] == int(err.headers["X-Retry-After"])


def test_window_is_shared_by_separate_redis_clients(redis_required):
    other_client = redis.Redis.from_url(settings.REDIS_URL)
    throttling.hit("t", "shared", limit=5, window_seconds=30)

    # What another process's client sees is the same sorted set.
    assert other_client.zcard("rl:t:shared") == 1
    other_client.close()


def test_window_is_shared_with_another_process(redis_required):
    code = (
        "import django; django.setup()\n"
        "from chatsite.api import throttling\n"
        "print(throttling.hit('t', 'xproc', limit=2, window_seconds=30).count)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "chatsite.settings", "REDIS_URL": settings.REDIS_URL}

    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=15,
        check=True,
    )

    assert out.stdout.strip().splitlines()[-1] == "1"
    assert throttling.hit("t", "xproc", limit=2, window_seconds=30).count == 2
    assert not throttling.hit("t", "xproc", limit=2, window_seconds=30).allowed


def test_redis_down_degrades_to_a_per_process_limiter(dead_redis):
    before = ratelimit_redis_errors()

    decisions = [throttling.hit("t", "down", limit=2, window_seconds=30) for _ in range(3)]

    assert [d.allowed for d in decisions] == [True, True, False]
    assert decisions[2].retry_in_seconds > 0
    assert ratelimit_redis_errors() == before + 3


def test_redis_down_check_still_raises_rate_limited(dead_redis):
    throttling.check("t", "down-check", limit=1, window_seconds=30)

    with pytest.raises(ApiError) as excinfo:
        throttling.check("t", "down-check", limit=1, window_seconds=30)

    assert excinfo.value.code == "RATE_LIMITED"


def test_redis_down_peek_and_reset_do_not_raise(dead_redis):
    throttling.hit("t", "down-peek", limit=5, window_seconds=30)

    assert throttling.peek("t", "down-peek", window_seconds=30).count == 1
    throttling.reset("t", "down-peek")
    assert throttling.peek("t", "down-peek", window_seconds=30).count == 0


def test_resetting_a_user_keeps_an_ipv6_address_window_that_starts_with_their_id(redis_required):
    throttling.hit("register", "2001:db8::1", limit=100, window_seconds=60)  # an address's window
    throttling.hit("dm_send_min", 2001, limit=100, window_seconds=60)  # user 2001's own

    removed = throttling.reset_user(2001)

    assert removed == ["rl:dm_send_min:2001"]
    assert get_redis().exists("rl:register:2001:db8::1")
