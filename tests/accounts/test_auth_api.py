"""Registration, log-in, bearer sessions and the failed-log-in lockout, over the REST API."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from chatsite.accounts.models import SecurityEvent, Session, User
from chatsite.accounts.tokens import hash_token
from tests.conftest import assert_api_error, client_for, login
from tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def post_login(username: str, password: str, *, ip: str = "127.0.0.1"):
    return APIClient().post(
        "/auth/login", {"username": username, "password": password}, format="json", REMOTE_ADDR=ip
    )


# --- Registration ---------------------------------------------------------------------------


def test_register_returns_201_with_user_id_and_username():
    resp = APIClient().post(
        "/auth/register", {"username": "alice", "password": DEFAULT_PASSWORD}, format="json"
    )

    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body == {"user_id": User.objects.get(username="alice").pk, "username": "alice"}


def test_register_duplicate_username_is_409_conflict():
    UserFactory(username="alice")

    resp = APIClient().post(
        "/auth/register", {"username": "alice", "password": DEFAULT_PASSWORD}, format="json"
    )

    assert_api_error(resp, code="CONFLICT", status=409)


def test_register_weak_password_is_400_with_password_field_errors():
    resp = APIClient().post("/auth/register", {"username": "alice", "password": "123"}, format="json")

    body = assert_api_error(resp, code="VALIDATION_ERROR", status=400)
    assert body["errors"]["password"], body
    assert not User.objects.filter(username="alice").exists()


# --- Log-in ---------------------------------------------------------------------------------


def test_login_returns_token_expiry_and_user_id():
    user = UserFactory()

    resp = post_login(user.username, DEFAULT_PASSWORD)

    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert {"token", "expires_at", "user_id"} <= body.keys()
    assert body["user_id"] == user.pk
    assert body["token"]
    assert bearer(body["token"]).get("/auth/sessions").status_code == 200


def test_login_token_is_stored_only_as_its_hash():
    user = UserFactory()

    token = post_login(user.username, DEFAULT_PASSWORD).json()["token"]

    session = Session.objects.get(user=user)
    assert session.token_hash == hash_token(token)
    for row in Session.objects.values():
        assert not any(token in str(value) for value in row.values()), row


def test_login_wrong_password_is_401_invalid_credentials():
    user = UserFactory()

    resp = post_login(user.username, "not the password")

    assert_api_error(resp, code="INVALID_CREDENTIALS", status=401)
    assert not Session.objects.filter(user=user).exists()


def test_disabled_account_cannot_log_in():
    user = UserFactory(disabled=True)

    resp = post_login(user.username, DEFAULT_PASSWORD)

    assert_api_error(resp, code="ACCOUNT_DISABLED", status=403)
    assert not Session.objects.filter(user=user).exists()


def test_disabling_an_account_makes_its_existing_token_401():
    user = UserFactory()
    client = client_for(user)
    # Flip only the flag (as the runbook SQL does): the session row itself is still live.
    User.objects.filter(pk=user.pk).update(disabled=True)

    assert_api_error(client.get("/auth/sessions"), code="UNAUTHENTICATED", status=401)


# --- Sessions -------------------------------------------------------------------------------


def test_logout_revokes_the_token():
    user = UserFactory()
    token = login(user)

    resp = bearer(token).post("/auth/logout")

    assert resp.status_code == 204
    assert Session.objects.get(user=user).revoked_at is not None
    assert_api_error(bearer(token).get("/auth/sessions"), code="UNAUTHENTICATED", status=401)


def test_sessions_lists_live_sessions_and_marks_the_current_one():
    user = UserFactory()
    current, other, revoked = login(user), login(user), login(user)
    bearer(revoked).post("/auth/logout")

    resp = bearer(current).get("/auth/sessions")

    assert resp.status_code == 200
    sessions = resp.json()["sessions"]
    by_id = {s["id"]: s for s in sessions}
    current_id = str(Session.objects.get(token_hash=hash_token(current)).pk)
    other_id = str(Session.objects.get(token_hash=hash_token(other)).pk)
    assert set(by_id) == {current_id, other_id}
    assert by_id[current_id]["current"] is True
    assert by_id[other_id]["current"] is False
    assert "token_hash" not in by_id[current_id]


def test_delete_session_revokes_that_token():
    user = UserFactory()
    keep, doomed = login(user), login(user)
    doomed_id = Session.objects.get(token_hash=hash_token(doomed)).pk

    resp = bearer(keep).delete(f"/auth/sessions/{doomed_id}")

    assert resp.status_code == 204
    assert_api_error(bearer(doomed).get("/auth/sessions"), code="UNAUTHENTICATED", status=401)
    assert bearer(keep).get("/auth/sessions").status_code == 200
    assert SecurityEvent.objects.filter(kind=SecurityEvent.Kind.SESSION_REVOKED, user=user).count() == 1


def test_delete_someone_elses_session_is_404_and_leaves_it_alive():
    mallory, victim = UserFactory(), UserFactory()
    victim_token = login(victim)
    victim_session_id = Session.objects.get(user=victim).pk

    resp = client_for(mallory).delete(f"/auth/sessions/{victim_session_id}")

    assert_api_error(resp, code="NOT_FOUND", status=404)
    assert bearer(victim_token).get("/auth/sessions").status_code == 200


def test_expired_session_is_401():
    user = UserFactory()
    token = login(user)
    Session.objects.filter(user=user).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert_api_error(bearer(token).get("/auth/sessions"), code="UNAUTHENTICATED", status=401)


# --- Failed log-in lockout ------------------------------------------------------------------


def test_ten_failed_logins_for_one_account_lock_it_even_with_the_right_password():
    user = UserFactory()
    # Every attempt from its own address, so only the per-account counter can lock.
    for i in range(settings.LOGIN_FAILURE_LIMIT):
        assert_api_error(
            post_login(user.username, "wrong", ip=f"10.0.0.{i + 1}"), code="INVALID_CREDENTIALS", status=401
        )

    resp = post_login(user.username, DEFAULT_PASSWORD, ip="10.0.1.1")

    body = assert_api_error(resp, code="RATE_LIMITED", status=429)
    assert int(resp["X-Retry-After"]) > 0
    assert body["retry_in_seconds"] == int(resp["X-Retry-After"])
    assert not Session.objects.filter(user=user).exists()
    locked = SecurityEvent.objects.get(kind=SecurityEvent.Kind.LOGIN_LOCKED)
    assert locked.user == user
    assert locked.data["by"] == "user"


def test_account_lockout_logs_a_security_warning(caplog):
    user = UserFactory()

    with caplog.at_level(logging.WARNING, logger="chatsite.security"):
        for i in range(settings.LOGIN_FAILURE_LIMIT):
            post_login(user.username, "wrong", ip=f"10.0.0.{i + 1}")

    warnings = [r for r in caplog.records if r.name == "chatsite.security" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].event == "login_locked"
    assert warnings[0].by == "user"
    assert warnings[0].user_id == user.pk


def test_ten_failed_logins_from_one_ip_lock_that_ip(caplog):
    user = UserFactory()
    with caplog.at_level(logging.WARNING, logger="chatsite.security"):
        for i in range(settings.LOGIN_FAILURE_LIMIT):
            assert_api_error(
                post_login(f"nobody{i}", "wrong", ip="10.9.9.9"), code="INVALID_CREDENTIALS", status=401
            )

    resp = post_login(user.username, DEFAULT_PASSWORD, ip="10.9.9.9")

    body = assert_api_error(resp, code="RATE_LIMITED", status=429)
    assert int(resp["X-Retry-After"]) > 0
    assert body["retry_in_seconds"] > 0
    locked = SecurityEvent.objects.get(kind=SecurityEvent.Kind.LOGIN_LOCKED)
    assert locked.data["by"] == "ip"
    assert locked.ip == "10.9.9.9"
    assert any(getattr(r, "event", None) == "login_locked" and r.by == "ip" for r in caplog.records)
    # The lock is on the address, not on the account: from elsewhere the user still gets in.
    assert post_login(user.username, DEFAULT_PASSWORD, ip="10.8.8.8").status_code == 200


def test_nine_failed_logins_do_not_lock():
    user = UserFactory()
    for _ in range(settings.LOGIN_FAILURE_LIMIT - 1):
        post_login(user.username, "wrong")

    assert post_login(user.username, DEFAULT_PASSWORD).status_code == 200
    assert not SecurityEvent.objects.filter(kind=SecurityEvent.Kind.LOGIN_LOCKED).exists()
