"""Migration 0003: security events written before the log-in hardening kept the typed username."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps

from chatsite.accounts import login_throttle
from chatsite.accounts.models import SecurityEvent, normalize_username
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

migration = importlib.import_module(
    "chatsite.accounts.migrations.0003_security_events_forget_typed_usernames"
)


def test_a_typed_username_is_replaced_by_the_keyed_hash_log_in_records_today():
    typed = "Hunter2-MyPassword"
    old = SecurityEvent.objects.create(
        kind=SecurityEvent.Kind.LOGIN_FAILED, ip="203.0.113.1", data={"username": typed, "channel": "api"}
    )

    migration.forget_typed_usernames(apps, None)

    old.refresh_from_db()
    assert old.data == {
        "channel": "api",
        "username_hmac": login_throttle.username_digest(normalize_username(typed)),
        "username_length": len(typed),
    }


def test_an_event_that_names_an_account_keeps_only_the_account():
    user = UserFactory()
    event = SecurityEvent.objects.create(
        kind=SecurityEvent.Kind.LOGIN_LOCKED, user=user, data={"username": user.username, "window": 300}
    )

    migration.forget_typed_usernames(apps, None)

    event.refresh_from_db()
    assert event.data == {"window": 300}
    assert event.user_id == user.pk
