"""Circuit breakers around PostgreSQL and Redis (seed 004 "Cascading Failures").

One breaker per dependency and per process. Closed: calls go through and connection-level
failures are counted; CIRCUIT_BREAKER_FAILURES consecutive ones open it. Open: calls fail at once
(the API answers 503 DATABASE_UNAVAILABLE with Retry-After; Redis users get `CircuitOpenError`, a
redis.ConnectionError, and take the fallback they already have: per-process rate limits, streams
polling the database with `relay_lag: true`). It stays open CIRCUIT_BREAKER_RESET_S: successes
reported meanwhile (a statement that was in flight, the flag refresher's read) are ignored, so
Retry-After is true. Then it half-opens by itself: the next call that asks (`allow`) is the one
trial, and its success closes the breaker, its failure opens it again for another interval. A
success reported after the interval by a caller that does not ask first (a background statement,
the /health probe) counts as that trial.

What counts, per dependency:
- database: a request's django.db OperationalError / InterfaceError that is about the connection
  (no SQLSTATE, i.e. refused / broken / pool timeout, or class 08, 57P01-03, 53300), seen by the
  DRF exception handler or `DatabaseBreakerMiddleware`. A statement timeout (57014) or a deadlock
  is a slow or unlucky query, not an outage, and does not count. Any statement that completes is a
  success (an execute wrapper every connection gets when it is created).
- redis: a connection error or timeout of a command or pipeline of `chatsite.api.redis`'s clients,
  and the result of the /health Redis probe (which PINGs with an unwrapped client, so it really
  asks Redis while the breaker is open). The channel layer and the pub/sub listeners keep their
  own reconnect logic and are not wrapped.

State is per process (no shared state to fail with the dependency). `reset` from the command or
the admin bumps a generation in `circuit_breaker_resets`, which every process's flag refresher
reads (chatsite/api/flags.py) and applies within FEATURE_FLAG_REFRESH_S. A breaker that opens
starts this process's refresher if nothing has yet (it otherwise starts on the first flag check).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils.deprecation import MiddlewareMixin

from chatsite.api.errors import ApiError, error_response
from chatsite.metrics import CIRCUIT_BREAKER_STATE, CIRCUIT_BREAKER_TRIPS

logger = logging.getLogger("chatsite.api.circuit")

CLOSED, HALF_OPEN, OPEN = "closed", "half_open", "open"
STATE_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}  # the circuit_breaker_state gauge


class CircuitOpenError(redis.ConnectionError):
    """Raised instead of calling Redis while its breaker is open (a ConnectionError, so every
    caller's existing Redis fallback applies)."""


class Breaker:
    def __init__(self, dependency: str) -> None:
        self.dependency = dependency
        self._lock = threading.Lock()
        self.state = CLOSED
        self.failures = 0  # consecutive
        self.opened_at: float | None = None  # monotonic
        self.opened_at_wall: datetime | None = None
        self.trial_started: float | None = None
        self.trips = 0
        CIRCUIT_BREAKER_STATE.labels(dependency=dependency).set(0)

    @staticmethod
    def threshold() -> int:
        return max(1, int(settings.CIRCUIT_BREAKER_FAILURES))

    @staticmethod
    def reset_s() -> float:
        return float(settings.CIRCUIT_BREAKER_RESET_S)

    def _to(self, state: str) -> None:
        self.state = state
        CIRCUIT_BREAKER_STATE.labels(dependency=self.dependency).set(STATE_VALUE[state])

    def allow(self) -> bool:
        """Whether a call may go to the dependency now (in half-open: the one trial)."""
        if self.state == CLOSED:
            return True
        with self._lock:
            now = time.monotonic()
            if self.state == OPEN:
                if self.opened_at is not None and now - self.opened_at < self.reset_s():
                    return False
                self._to(HALF_OPEN)
                logger.info("Circuit breaker HALF-OPEN: %s, letting one trial call through", self.dependency)
            elif self.state == CLOSED:
                return True
            # Half-open: one trial at a time. A trial that never reports (its request did not
            # reach the dependency) is replaced after another reset interval.
            if self.trial_started is not None and now - self.trial_started < self.reset_s():
                return False
            self.trial_started = now
            return True

    def record_success(self) -> None:
        if self.state == CLOSED and self.failures == 0:
            return  # the hot path: no lock
        with self._lock:
            if self.state == OPEN:
                if self.opened_at is not None and time.monotonic() - self.opened_at < self.reset_s():
                    # Open means open for the whole interval: a statement that was in flight or a
                    # background read (the flag refresher, every few seconds) does not close it.
                    return
                # The interval is over and nobody asked for the trial first: this call was it.
                self._to(HALF_OPEN)
            if self.state != CLOSED:
                logger.info("Circuit breaker CLOSED: %s answers again", self.dependency)
            self.failures = 0
            self.trial_started = None
            self._to(CLOSED)

    def record_failure(self) -> None:
        with self._lock:
            self.failures += 1
            if self.state == HALF_OPEN or (self.state == CLOSED and self.failures >= self.threshold()):
                self._open()
                opened = True
            else:
                opened = False
        if opened:
            _follow_resets()

    def _open(self) -> None:
        self.opened_at = time.monotonic()
        self.opened_at_wall = datetime.now(UTC)
        self.trial_started = None
        self.trips += 1
        CIRCUIT_BREAKER_TRIPS.labels(dependency=self.dependency).inc()
        self._to(OPEN)
        # The line seed 004's runbook greps for.
        logger.warning(
            "Circuit breaker OPEN: %s connection failed %d consecutive times",
            self.dependency,
            self.failures,
            extra={"dependency": self.dependency, "failures": self.failures},
        )

    def retry_after_s(self) -> int:
        """Whole seconds until the breaker lets a trial through (at least 1)."""
        if self.state != OPEN or self.opened_at is None:
            return 1
        return max(1, math.ceil(self.reset_s() - (time.monotonic() - self.opened_at)))

    def reset(self) -> None:
        with self._lock:
            if self.state != CLOSED:
                logger.info("Circuit breaker RESET: %s closed by an operator", self.dependency)
            self.failures = 0
            self.trial_started = None
            self._to(CLOSED)

    def snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "consecutive_failures": self.failures,
            "threshold": self.threshold(),
            "reset_s": self.reset_s(),
            "opened_at": self.opened_at_wall.isoformat()
            if self.state != CLOSED and self.opened_at_wall
            else None,
            "retry_after_s": self.retry_after_s() if self.state == OPEN else None,
            "trips": self.trips,
        }

    def _after_fork_in_child(self) -> None:
        # A fork while another thread held the lock would leave it held forever in the child.
        self._lock = threading.Lock()


BREAKERS: dict[str, Breaker] = {"database": Breaker("database"), "redis": Breaker("redis")}


def _follow_resets() -> None:
    """An open breaker must hear of an operator's reset: start this process's flag refresher
    (which reads the reset generations) if no flag check has started it yet. Never waits."""
    from chatsite.api import flags

    flags.overrides.start()


def breaker(dependency: str) -> Breaker:
    return BREAKERS[dependency]


def snapshot() -> dict[str, dict[str, Any]]:
    return {name: b.snapshot() for name, b in BREAKERS.items()}


# --- Resets from other processes ---------------------------------------------------------------

# The generation of each dependency this process saw last; None until the first successful read.
_seen_generations: dict[str, int] | None = None
_seen_lock = threading.Lock()


def apply_reset_generations(generations: dict[str, int]) -> None:
    """Called by the refresher with circuit_breaker_resets' rows: a generation newer than the
    one this process saw last resets its breaker. The first read only sets the baseline (resets
    from before this process read are not its business); a dependency with no row is generation 0,
    so the very first reset (generation 1) resets every process that read the empty table. A
    generation lower than the one seen (the row was deleted or recreated) is a new baseline."""
    global _seen_generations
    to_reset = []
    with _seen_lock:
        current = {dep: int(generations.get(dep, 0)) for dep in BREAKERS}
        if _seen_generations is not None:
            to_reset = [dep for dep, gen in current.items() if gen > _seen_generations.get(dep, 0)]
        _seen_generations = current
    for dependency in to_reset:
        BREAKERS[dependency].reset()


def forget_reset_generations() -> None:
    """Tests: behave as a process that has not read circuit_breaker_resets yet."""
    global _seen_generations
    with _seen_lock:
        _seen_generations = None


def _after_fork_in_child() -> None:
    global _seen_lock
    _seen_lock = threading.Lock()
    for b in BREAKERS.values():
        b._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# --- PostgreSQL -----------------------------------------------------------------------------------

# SQLSTATEs that mean "cannot talk to the database" rather than "this query failed".
_OUTAGE_SQLSTATES = {"57P01", "57P02", "57P03", "53300"}


def is_database_outage(exc: BaseException) -> bool:
    if isinstance(exc, InterfaceError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__
    if cause is None or not type(cause).__module__.startswith(("psycopg", "psycopg_pool")):
        return False  # e.g. SQLite's "database is locked" in embedded mode
    sqlstate = getattr(cause, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in _OUTAGE_SQLSTATES


def database_unavailable_error() -> ApiError:
    retry = str(BREAKERS["database"].retry_after_s())
    return ApiError("DATABASE_UNAVAILABLE", headers={"Retry-After": retry}, retry_in_seconds=int(retry))


def database_failure(exc: BaseException) -> ApiError | None:
    """For an exception that reached an API boundary: count it and return the 503 to answer
    with if it is a database outage, else None."""
    if not is_database_outage(exc):
        return None
    BREAKERS["database"].record_failure()
    logger.warning("database unavailable: %s", type(exc.__cause__ or exc).__name__)
    return database_unavailable_error()


def _count_success(execute, sql, params, many, context):
    result = execute(sql, params, many, context)
    BREAKERS["database"].record_success()  # a statement ran: the database answers
    return result


def on_connection_created(sender, connection, **kwargs) -> None:
    """Count every statement that completes as a success. Not the checkout itself: a pooled
    connection cut by the outage is handed out fine and fails on its first statement, and a
    success there would restart the count of consecutive failures. Inserted first, so a caller's
    `with connection.execute_wrapper(...)` still pops its own wrapper (the list's last)."""
    if connection.vendor == "postgresql" and not getattr(connection, "_breaker_counts", False):
        connection.execute_wrappers.insert(0, _count_success)
        connection._breaker_counts = True


class DatabaseBreakerMiddleware(MiddlewareMixin):
    """While the database breaker is open, API requests get 503 DATABASE_UNAVAILABLE with
    Retry-After at once instead of each waiting DB_POOL_TIMEOUT for a connection. The admin is
    let through (its failures still count) so staff can reach the reset button; probes are
    answered before this middleware (ops.middleware.ProbeMiddleware)."""

    def process_request(self, request):
        if request.path.startswith("/admin/"):
            return None
        if not BREAKERS["database"].allow():
            return error_response(database_unavailable_error())
        return None

    def process_exception(self, request, exception):
        err = database_failure(exception)
        if err is None or request.path.startswith("/admin/"):
            return None
        return error_response(err)


# --- Redis ----------------------------------------------------------------------------------------

# What counts as a Redis failure (also for the /health probe, ops/health.py).
REDIS_FAILURES = (redis.ConnectionError, redis.TimeoutError, OSError)
# redis-py's own pool running out in this process (a burst of callers) says nothing about Redis:
# it is raised before any socket is touched, so it is not counted (else a burst would open the
# breaker and skip a healthy Redis for CIRCUIT_BREAKER_RESET_S).
_POOL_EXHAUSTED = ("Too many connections", "No connection available.")


def is_redis_outage(exc: BaseException) -> bool:
    if isinstance(exc, redis.exceptions.MaxConnectionsError):
        return False
    return not (isinstance(exc, redis.ConnectionError) and str(exc) in _POOL_EXHAUSTED)


def _redis_guard() -> Breaker:
    b = BREAKERS["redis"]
    if not b.allow():
        raise CircuitOpenError(f"redis circuit open; retry in {b.retry_after_s()}s")
    return b


@contextlib.contextmanager
def _through_redis_breaker():
    """Around one Redis call (a command or a pipeline, sync or async): refused while the breaker
    is open, an outage counted as a failure, a completed call as a success."""
    b = _redis_guard()
    try:
        yield
    except REDIS_FAILURES as exc:
        if is_redis_outage(exc):
            b.record_failure()
        raise
    b.record_success()


class BreakerPipeline(redis.client.Pipeline):
    def execute(self, raise_on_error: bool = True):
        with _through_redis_breaker():
            return super().execute(raise_on_error)


class BreakerRedis(redis.Redis):
    """redis.Redis whose commands and pipelines go through the redis breaker."""

    def execute_command(self, *args, **options):
        with _through_redis_breaker():
            return super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint=None) -> BreakerPipeline:
        return BreakerPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)


class AsyncBreakerPipeline(aioredis.client.Pipeline):
    async def execute(self, raise_on_error: bool = True):
        with _through_redis_breaker():
            return await super().execute(raise_on_error)


class AsyncBreakerRedis(aioredis.Redis):
    async def execute_command(self, *args, **options):
        with _through_redis_breaker():
            return await super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint=None) -> AsyncBreakerPipeline:
        return AsyncBreakerPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
