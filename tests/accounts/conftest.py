"""Fixtures for the accounts tests: the log-in throttle's clock seam and its fallback state."""

from __future__ import annotations

import time

import pytest

from chatsite.accounts import login_throttle


@pytest.fixture(autouse=True)
def _clean_login_throttle():
    login_throttle.reset_local()
    yield
    login_throttle.reset_local()


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    """Moves the throttle's windows and deadlines forward without sleeping."""
    fake = FakeClock()
    monkeypatch.setattr(login_throttle, "clock", fake)
    return fake
