"""Probe and metrics endpoints (seed 003): /health, /health/database, /ready, /live, /metrics.

Plain Django views with no user auth: load balancers, docker healthchecks and Prometheus call
them. ops.middleware.ProbeMiddleware calls them before the HTTPS redirect and the host check. A
probe must answer even when its own code breaks, so every view turns an exception into a 503 body.

What anyone may read: /live, /ready, and /health and /health/database reduced to their statuses
(ok/degraded/down per check): enough for a load balancer or an uptime monitor. The version, pool
stats, latencies and memory figures help an attacker pick an exploit or time a resource attack,
so /health shows them only to a request that passes the scrape restriction (METRICS_ALLOWED_IPS,
METRICS_TOKEN), and /metrics is refused (403 PERMISSION_DENIED) to any other once one is set.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import REGISTRY, CollectorRegistry, ProcessCollector, multiprocess
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from chatsite.api.errors import json_error
from chatsite.api.request import client_ip
from chatsite.api.schema import json_content, plain_view_schema
from chatsite.metrics import REDIS_PING_SECONDS, REDIS_READY, STARTED_AT, STATE_COLLECTORS, UPTIME_SECONDS
from ops import health

logger = logging.getLogger("chatsite.ops")

# --- OpenAPI (chatsite/api/schema.py adds these plain views to /schema/) ----------------------

_CHECK = {
    "type": "object",
    "properties": {"status": {"type": "string", "enum": ["ok", "degraded", "down", "disabled"]}},
    "required": ["status"],
    "additionalProperties": True,
    "description": "Only `status` unless the request passes the scrape restriction.",
}
_PROBE_FAILED = {
    "type": "object",
    "properties": {"status": {"type": "string", "enum": ["down"]}, "error": {"type": "string"}},
    "required": ["status", "error"],
}
_HEALTH = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ok", "degraded", "down"]},
        "checks": {"type": "object", "additionalProperties": _CHECK},
        "version": {"type": "string"},
        "uptime_seconds": {"type": "number"},
    },
    "required": ["status", "checks"],
}
_READY = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ready", "degraded", "not_ready"]},
        "checks": {"type": "object", "additionalProperties": _CHECK},
    },
    "required": ["status", "checks"],
}


def _probe_schema(operation_id: str, description: str, up: dict, down: dict | None = None):
    """A probe's operation: JSON, no user auth; 503 when down, or when the probe itself fails."""
    down_body = {"anyOf": [down, _PROBE_FAILED]} if down else _PROBE_FAILED
    return plain_view_schema(
        operation_id=operation_id,
        tags=["ops"],
        description=description,
        responses={200: json_content(up, "Up."), 503: json_content(down_body, "Down, or the probe failed.")},
    )


def _probe(view: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """GET/HEAD only, never cached by a proxy, and never an exception."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        try:
            return view(request)
        except Exception:
            logger.exception("probe %s failed", request.path)
            return JsonResponse({"status": "down", "error": "internal"}, status=503)

    return require_safe(never_cache(wrapper))


def _uptime_seconds() -> float:
    return round(time.time() - STARTED_AT, 3)


def _record(checks: dict[str, health.Check]) -> None:
    UPTIME_SECONDS.set(_uptime_seconds())
    if "redis" in checks:
        REDIS_READY.set(1 if checks["redis"]["status"] == "ok" else 0)
        if checks["redis"].get("latency_ms") is not None:
            REDIS_PING_SECONDS.set(checks["redis"]["latency_ms"] / 1000)


@functools.cache
def _networks(entries: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    # Cached by value, so a test's settings override takes effect without a reload.
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip())


def _bearer_token(request: HttpRequest) -> str:
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _scrape_refusal(request: HttpRequest) -> str | None:
    """Why the request fails the configured scrape restriction, or None if it passes. Each one
    that is set must pass: METRICS_ALLOWED_IPS (the client address, TRUSTED_PROXIES applied, as
    everywhere else) and METRICS_TOKEN (Authorization: Bearer)."""
    allowed = _networks(tuple(settings.METRICS_ALLOWED_IPS))
    if allowed:
        try:
            address = ipaddress.ip_address(client_ip(request) or "")
        except ValueError:
            return "Your address may not read this."
        if not any(address in network for network in allowed):
            return "Your address may not read this."
    if settings.METRICS_TOKEN and not hmac.compare_digest(
        _bearer_token(request).encode(), settings.METRICS_TOKEN.encode()
    ):
        return "Send the scrape token as Authorization: Bearer <token>."
    return None


def _shows_details(request: HttpRequest) -> bool:
    """Version, pool stats, latencies and memory: only once a restriction is set, and only to a
    request that passes it. Unrestricted, they are shown to nobody (the statuses still are)."""
    restricted = bool(settings.METRICS_ALLOWED_IPS or settings.METRICS_TOKEN)
    return restricted and _scrape_refusal(request) is None


def _public(check: health.Check) -> health.Check:
    return {"status": check["status"]}


@_probe_schema(
    "ops_health",
    "Every dependency's status (database, redis, celery, memory, presence); details only for a request that "
    "passes METRICS_ALLOWED_IPS / METRICS_TOKEN. 503 when the database is down.",
    _HEALTH,
    _HEALTH,
)
@_probe
def health_view(request: HttpRequest) -> HttpResponse:
    checks = health.run_checks("database", "redis", "celery", "memory", "presence", "circuit_breaker")
    _record(checks)
    status = health.overall_status(checks)
    if _shows_details(request):
        body = {
            "status": status,
            "version": settings.VERSION,
            "uptime_seconds": _uptime_seconds(),
            "checks": checks,
        }
    else:
        body = {"status": status, "checks": {name: _public(check) for name, check in checks.items()}}
    return JsonResponse(body, status=503 if status == "down" else 200)


@_probe_schema("ops_health_database", "The database check alone.", _CHECK, _CHECK)
@_probe
def health_database(request: HttpRequest) -> HttpResponse:
    check = health.check_database()
    body = check if _shows_details(request) else _public(check)
    return JsonResponse(body, status=200 if health.is_up(check) else 503)


@_probe_schema(
    "ops_ready",
    "Readiness for a load balancer: only the database decides (Redis is reported, not gating).",
    _READY,
    _READY,
)
@_probe
def ready(request: HttpRequest) -> HttpResponse:
    # Only the database decides: without Redis the service still stores every message and
    # streams poll the database (relay_lag), so pulling every instance out of the load balancer
    # during a Redis outage would turn a degradation into an outage. Redis is reported, not gating.
    # Celery is left out too: without workers tasks wait in the broker.
    checks = health.run_checks("database", "redis")
    _record(checks)
    is_ready = health.is_up(checks["database"])
    degraded = not health.is_up(checks["redis"])
    status = ("degraded" if degraded else "ready") if is_ready else "not_ready"
    return JsonResponse({"status": status, "checks": checks}, status=200 if is_ready else 503)


@_probe_schema(
    "ops_live",
    "Liveness: no dependency checks.",
    {
        "type": "object",
        "properties": {"status": {"type": "string", "enum": ["alive"]}, "uptime_seconds": {"type": "number"}},
        "required": ["status", "uptime_seconds"],
    },
)
@_probe
def live(request: HttpRequest) -> HttpResponse:
    # No dependency checks: a restart cannot fix a dead database, so liveness must not see it.
    return JsonResponse({"status": "alive", "uptime_seconds": _uptime_seconds()})


def _forget_dead_processes(directory: str) -> None:
    """The live-only gauges ("live*" modes: redis_ready, uptime) of processes that are gone, e.g. a
    finished `manage.py` command or a crashed worker, must not count: prometheus_client drops a
    process's live files when told it is dead, and a dead pid is one that no longer exists here."""
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, directory)
        except PermissionError:
            pass  # alive, another user's


def _registry() -> Collector:
    if directory := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several processes write their samples to files there; add them up per scrape.
        _forget_dead_processes(directory)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        # State collectors read the database. With it down each would wait DB_POOL_TIMEOUT in
        # turn, and the scrape would outlast Prometheus' timeout (ServiceDown for a database
        # outage): one bounded probe (ops/health.py, about a second) decides for all of them.
        database_up = health.is_up(health.check_database())
        for collector in STATE_COLLECTORS:
            if database_up or not getattr(collector, "reads_database", True):
                registry.register(collector)
        # process_* of the process answering: the server (one per container in docker-compose),
        # for the dashboard's memory and CPU panels; per-process files cannot hold them.
        ProcessCollector(registry=registry)
        return registry
    return REGISTRY


def _json_value(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


def _metrics_json(registry: Collector) -> dict[str, list[dict]]:
    """{metric: [{labels, value}, ...]}; histogram parts say which series they are in "sample"."""
    out: dict[str, list[dict]] = {}
    for family in registry.collect():
        samples = out.setdefault(family.name, [])
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue  # creation timestamps: noise outside Prometheus
            entry = {"labels": sample.labels, "value": _json_value(sample.value)}
            if sample.name not in (family.name, f"{family.name}_total"):
                entry["sample"] = sample.name
            samples.append(entry)
    return out


@plain_view_schema(
    operation_id="ops_metrics",
    tags=["ops"],
    description="Prometheus metrics: the text format, OpenMetrics if the Accept header asks for "
    "it, or JSON (`{metric: [{labels, value, sample?}]}`) for `Accept: application/json`. Refused "
    "(403) to a request that fails METRICS_ALLOWED_IPS / METRICS_TOKEN once either is set.",
    responses={
        200: {
            "description": "The metrics.",
            "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/openmetrics-text": {"schema": {"type": "string"}},
                "application/json": {
                    "schema": {
                        "type": "object",
                        "additionalProperties": {"type": "array", "items": {"type": "object"}},
                    }
                },
            },
        },
        503: json_content(_PROBE_FAILED, "The probe failed."),
    },
    errors=("PERMISSION_DENIED",),
)
@_probe
def metrics(request: HttpRequest) -> HttpResponse:
    refusal = _scrape_refusal(request)
    if refusal is not None:
        return json_error("PERMISSION_DENIED", refusal)
    _record(health.run_checks("redis"))
    registry = _registry()
    accept = request.headers.get("Accept", "")
    if "application/json" in accept:
        return JsonResponse(_metrics_json(registry))
    encoder, content_type = choose_encoder(accept)  # Prometheus text, or OpenMetrics if asked
    return HttpResponse(encoder(registry), content_type=content_type)
