"""Our own Prometheus metrics, next to django-prometheus' HTTP and DB ones.

Names follow seed 003 / seed 004 so their dashboards and alerts work unchanged. With several
processes, set PROMETHEUS_MULTIPROC_DIR (docker-compose does) and /metrics aggregates them.
This module is the one place metrics are declared from; it imports no app, so every layer may use it.
"""

from __future__ import annotations

import time

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

STARTED_AT = time.time()

WS_CONNECTIONS_ACTIVE = Gauge(
    "websocket_connections_active",
    "Open realtime streams (WebSocket and SSE)",
    ["transport"],
    multiprocess_mode="livesum",
)
WS_CONNECTIONS_TOTAL = Counter(
    "websocket_connections", "Realtime streams accepted since start", ["transport"]
)
WS_DISCONNECTIONS_TOTAL = Counter(
    "websocket_disconnections", "Realtime streams closed, by close reason", ["transport", "reason"]
)
WS_CONNECTION_REJECTED = Counter(
    "ws_connection_rejected", "Connections refused or cut, by reason", ["reason"]
)
WS_MESSAGES_SENT = Counter("ws_messages_sent", "Frames sent to clients, by frame type", ["type"])
WS_MESSAGES_RECEIVED = Counter(
    "ws_messages_received", "Frames received from clients, by frame type", ["type"]
)

# "live*" modes: only processes that are running count (ops.views drops the files of dead ones),
# so a finished manage.py command's last value cannot stick.
REDIS_READY = Gauge(
    "redis_ready", "1 when Redis (channel layer) answers, else 0", multiprocess_mode="livemin"
)
REDIS_ERRORS = Counter("redis_errors", "Redis errors, by component", ["component"])
RATE_LIMIT_HITS = Counter("rate_limit_hits", "Requests refused by a rate limit (429), by scope", ["scope"])
UPTIME_SECONDS = Gauge("uptime_seconds", "Seconds since this process started", multiprocess_mode="livemax")
# Circuit breakers (chatsite/api/circuit.py): 0 closed, 1 half-open, 2 open; the worst process wins.
CIRCUIT_BREAKER_STATE = Gauge(
    "circuit_breaker_state",
    "Circuit breaker state by dependency: 0 closed, 1 half-open, 2 open",
    ["dependency"],
    multiprocess_mode="livemax",
)
CIRCUIT_BREAKER_TRIPS = Counter(
    "circuit_breaker_trips", "Times a circuit breaker opened, by dependency", ["dependency"]
)
# Alert inputs (ops/monitoring/alerts.yml, docs/operations.md "Alerts").
REDIS_PING_SECONDS = Gauge(
    "redis_ping_seconds",
    "Latency of the last Redis PING of a /metrics or /health check",
    multiprocess_mode="livemax",
)
AUTH_LOGIN_FAILURES = Counter(
    "auth_login_failures", "Failed password checks (POST /auth/login, /admin/login/), by channel", ["channel"]
)
# Label sets the alert rules read (ops/monitoring/alerts.yml), created at 0 on import: a counter's
# labelled series otherwise appears only at its first event, and increase()/rate() cannot see that
# first burst on a fresh instance (FailedAuthSpike, StreamAuthExpiredSpike), nor can a ratio with
# an empty side fire (StreamConnectionFailureRateHigh). Keep in step with the rules' selectors
# (tests/ops/monitoring/test_alert_inputs.py checks they are exposed at 0 before any event).
STREAM_TRANSPORTS = ("ws", "sse")
LOGIN_CHANNELS = ("api", "admin")
ALERTED_REJECTION_REASONS = ("unauthenticated", "total_limit", "ip_limit", "origin")
for _channel in LOGIN_CHANNELS:
    AUTH_LOGIN_FAILURES.labels(channel=_channel)
for _reason in ALERTED_REJECTION_REASONS:
    WS_CONNECTION_REJECTED.labels(reason=_reason)
for _transport in STREAM_TRANSPORTS:
    WS_CONNECTIONS_TOTAL.labels(transport=_transport)
    WS_DISCONNECTIONS_TOTAL.labels(transport=_transport, reason="unauthenticated")

# Every SQL statement's duration (ops/monitoring/db_timing.py installs the wrapper): the runbooks'
# "database p99 > 200 ms". Buckets around that threshold.
DB_QUERY_DURATION = Histogram(
    "db_query_duration_seconds",
    "Duration of SQL statements run through Django",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


# Collectors that read stored state at scrape time (e.g. dm's queue depths). They are not
# per-process samples, so /metrics adds them to the multiprocess registry as well.
STATE_COLLECTORS: list = []


def register_state_collector(collector) -> None:
    if collector not in STATE_COLLECTORS:
        STATE_COLLECTORS.append(collector)
        REGISTRY.register(collector)
