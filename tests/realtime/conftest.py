"""Fixtures for every realtime test: a healthy relay to start from, and no leaked slots after."""

from __future__ import annotations

import pytest

from chatsite.realtime import relay
from chatsite.realtime.limits import connections


@pytest.fixture(autouse=True)
def _fresh_relay_health():
    """The relay's health is per process: an earlier outage test must not leak relay_lag."""
    relay.health.ok = True
    relay.health.checked_at = 0.0
    yield
    relay.health.ok = True
    relay.health.checked_at = 0.0


@pytest.fixture(autouse=True)
def _no_leaked_connection_slots():
    """Every test disconnects what it opened, so the per-process admission counters return to 0."""
    yield
    leaked = (connections.total, dict(connections.per_ip))
    connections.total = 0  # reset anyway, so one failure does not cascade into the next tests
    connections.per_ip.clear()
    assert leaked == (0, {}), f"connection slots not released: {leaked}"
