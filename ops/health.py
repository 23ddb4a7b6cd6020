"""Dependency checks behind /health, /ready and /metrics (reads only).

Every check returns a dict with a "status" of "ok", "degraded", "down" or "disabled". Probes come
every few seconds from load balancers, so a dead or hanging dependency must never hang them: each
check runs in its own thread and `run_checks` waits at most CHECK_DEADLINE_S for all of them. A
check still running from an earlier probe is joined rather than started again, so a hung
dependency ties up at most one thread per check and is not hammered by every probe.
"""

from __future__ import annotations

import contextvars
import logging
import resource
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from chatsite.api import circuit
from chatsite.api.flags import is_enabled
from chatsite.api.redis import get_probe_redis
from presence import liveness

logger = logging.getLogger("chatsite.ops")

Check = dict[str, Any]

CHECK_DEADLINE_S = 1.0
DB_POOL_WAIT_S = 0.8  # under the deadline, so pool exhaustion reports as such, not as a timeout
CELERY_PING_TIMEOUT_S = 0.5
MEMORY_DEGRADED_RATIO = 0.8  # seed 003 "High Memory" warning threshold


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _database() -> Check:
    conn = connections[DEFAULT_DB_ALIAS]
    pool = getattr(conn, "pool", None)  # psycopg pool (PostgreSQL with OPTIONS["pool"]), else None
    started = time.perf_counter()
    if pool is not None:
        # Straight from the pool: a Django connection opened in this short-lived thread would
        # never go back to it. The bounded wait also covers an exhausted pool.
        pool.open()
        with pool.connection(timeout=DB_POOL_WAIT_S) as raw:
            raw.execute("SELECT 1").fetchone()
        result: Check = {"status": "ok", "latency_ms": _ms(started), "vendor": conn.vendor}
        stats = pool.get_stats()
        result["pool"] = {
            "min": stats.get("pool_min"),
            "max": stats.get("pool_max"),
            "size": stats.get("pool_size"),
            "available": stats.get("pool_available"),
            "waiting": stats.get("requests_waiting"),
        }
        return result
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        conn.close()  # this thread's own connection, never the request's
    return {"status": "ok", "latency_ms": _ms(started), "vendor": conn.vendor}


def _redis() -> Check:
    """PING with a client outside the redis breaker, so an open breaker does not make Redis look
    down (redis_ready, RedisDown); the answer is reported to the breaker like any other call (a
    success after its open interval closes it, failures count towards opening it)."""
    client = get_probe_redis()
    if client is None:
        return {"status": "disabled", "detail": "REDIS_URL unset (embedded mode)"}
    breaker = circuit.breaker("redis")
    started = time.perf_counter()
    try:
        client.ping()
    except circuit.REDIS_FAILURES:
        breaker.record_failure()
        raise
    breaker.record_success()
    return {"status": "ok", "latency_ms": _ms(started)}


def _celery() -> Check:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return {"status": "ok", "mode": "eager", "detail": "tasks run in-process"}
    from chatsite.celery import app

    started = time.perf_counter()
    workers = len(app.control.ping(timeout=CELERY_PING_TIMEOUT_S) or [])
    # Tasks queue in the broker until a worker comes back, so no workers is degraded, not down.
    return {
        "status": "ok" if workers else "degraded",
        "mode": "workers",
        "workers": workers,
        "latency_ms": _ms(started),
    }


def _cgroup_memory_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = Path(path).read_text().strip()
        except OSError:
            continue
        # cgroup v2 says "max"; v1 says a number near 2**63 for "no limit".
        if raw.isdigit() and int(raw) < 2**60:
            return int(raw)
        return None
    return None


def _rss_bytes() -> tuple[int, str]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024, "current"
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is kilobytes on Linux, bytes on macOS; it is the peak, not the current size.
    return (peak if sys.platform == "darwin" else peak * 1024), "peak"


def _memory() -> Check:
    rss, kind = _rss_bytes()
    result: Check = {"status": "ok", "rss_bytes": rss, "rss_mb": round(rss / 2**20, 1), "rss_kind": kind}
    limit = _cgroup_memory_limit()
    if limit:
        ratio = rss / limit
        result.update(limit_bytes=limit, used_ratio=round(ratio, 3))
        if ratio >= MEMORY_DEGRADED_RATIO:
            result["status"] = "degraded"
    return result


def _presence() -> Check:
    """Presence keeps liveness in Redis; without it, heartbeats write PostgreSQL (degraded: it
    works, at a database write per heartbeat). docs/presence.md "Redis down"."""
    if not is_enabled("presence"):
        return {"status": "disabled", "detail": "PRESENCE_ENABLED is off"}
    if liveness.store() == "redis":
        return {"status": "ok", "store": "redis"}
    return {
        "status": "degraded",
        "store": "database",
        "detail": "Redis unavailable: liveness and heartbeats are kept in PostgreSQL",
    }


def _circuit_breaker() -> Check:
    """This process's breakers (chatsite/api/circuit.py): degraded while one is not closed."""
    breakers = circuit.snapshot()
    closed = all(b["state"] == circuit.CLOSED for b in breakers.values())
    return {"status": "ok" if closed else "degraded", **breakers}


CHECKS: dict[str, Callable[[], Check]] = {
    "database": _database,
    "redis": _redis,
    "celery": _celery,
    "memory": _memory,
    "presence": _presence,
    "circuit_breaker": _circuit_breaker,
}

_in_flight: dict[str, Future[Check]] = {}
_in_flight_lock = threading.Lock()


def _guarded(name: str) -> Check:
    try:
        return CHECKS[name]()
    except Exception as exc:
        # The probe body is public: name the failure, keep hosts and messages in the log.
        logger.warning("health check %s failed: %s: %s", name, type(exc).__name__, exc)
        return {"status": "down", "error": type(exc).__name__}


def _start(name: str) -> Future[Check]:
    future: Future[Check] = Future()
    context = contextvars.copy_context()  # the check's log lines carry the probing request's id

    def run() -> None:
        try:
            result = context.run(_guarded, name)
        except BaseException as exc:  # never leave it pending: later probes would join it forever
            result = {"status": "down", "error": type(exc).__name__}
        future.set_result(result)

    # A daemon thread, not a pool: a check hung on a dead socket must not hold up process exit.
    threading.Thread(target=run, name=f"health-check-{name}", daemon=True).start()
    return future


def _submit(name: str) -> Future[Check]:
    with _in_flight_lock:
        future = _in_flight.get(name)
        if future is None or future.done():
            future = _start(name)
            _in_flight[name] = future
        return future


def run_checks(*names: str, deadline_s: float = CHECK_DEADLINE_S) -> dict[str, Check]:
    """Run the named checks concurrently; one that misses the shared deadline is reported down."""
    futures = {name: _submit(name) for name in names}
    until = time.monotonic() + deadline_s
    results: dict[str, Check] = {}
    for name, future in futures.items():
        try:
            results[name] = future.result(timeout=max(0.0, until - time.monotonic()))
        except FutureTimeout:
            logger.warning("health check %s timed out after %ss", name, deadline_s)
            results[name] = {"status": "down", "error": "timeout", "timeout_s": deadline_s}
    return results


def check_database() -> Check:
    return run_checks("database")["database"]


def check_redis() -> Check:
    return run_checks("redis")["redis"]


def check_celery() -> Check:
    return run_checks("celery")["celery"]


def check_memory() -> Check:
    return run_checks("memory")["memory"]


def is_up(check: Check) -> bool:
    """A dependency that is configured and answering, or deliberately absent."""
    return check["status"] in ("ok", "degraded", "disabled")


def overall_status(checks: dict[str, Check]) -> str:
    """down when the database is (nothing works without it); degraded when anything else is off."""
    if not is_up(checks.get("database", {"status": "down"})):
        return "down"
    if any(c["status"] in ("down", "degraded") for c in checks.values()):
        return "degraded"
    return "ok"
