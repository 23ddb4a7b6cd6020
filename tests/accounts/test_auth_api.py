"""Registration, log-in, bearer sessions and the failed-log-in lockout, over the REST API."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher
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


def test_disabled_account_cannot_log_in_with_the_right_password():
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


# --- Account details (issue 11 item 13) and the timing oracle (item 7) ---------------------------


class CountingHasher(MD5PasswordHasher):
    """MD5 (fast, as in every test) that counts how often a password was hashed."""

    calls = 0

    def encode(self, password, salt):
        type(self).calls += 1
        return super().encode(password, salt)


def test_unknown_username_runs_the_password_hasher_like_a_wrong_password(settings):
    settings.PASSWORD_HASHERS = ["tests.accounts.test_auth_api.CountingHasher"]
    user = UserFactory()
    CountingHasher.calls = 0
    assert_api_error(post_login(user.username, "wrong"), code="INVALID_CREDENTIALS", status=401)
    known_wrong = CountingHasher.calls

    CountingHasher.calls = 0
    assert_api_error(post_login("nosuchuser", "wrong"), code="INVALID_CREDENTIALS", status=401)

    assert CountingHasher.calls == known_wrong >= 1


def test_disabled_account_is_403_with_a_wrong_password_too():
    user = UserFactory(disabled=True)

    resp = post_login(user.username, "not the password")

    assert_api_error(resp, code="ACCOUNT_DISABLED", status=403)
    assert not SecurityEvent.objects.filter(kind=SecurityEvent.Kind.LOGIN_FAILED).exists()


def test_failed_login_for_an_unknown_name_stores_no_reversible_username():
    typed = "my-secret-password-typed-here"

    post_login(typed, "wrong")

    event = SecurityEvent.objects.get(kind=SecurityEvent.Kind.LOGIN_FAILED)
    assert event.user is None
    assert typed not in str(event.data)
    assert len(event.data["username_hmac"]) == 16
    assert event.data["username_length"] == len(typed)


def test_failed_login_for_an_existing_account_stores_the_user_not_the_typed_name():
    user = UserFactory(username="alice")

    post_login("ALICE", "wrong")

    event = SecurityEvent.objects.get(kind=SecurityEvent.Kind.LOGIN_FAILED)
    assert event.user == user
    assert "ALICE" not in str(event.data) and "alice" not in str(event.data)


def test_registrations_are_limited_per_address(settings, api_client):
    settings.REGISTRATIONS_PER_IP_PER_HOUR = 2
    for name in ("first", "second"):
        resp = api_client.post(
            "/auth/register", {"username": name, "password": "a-long-password-1"}, format="json"
        )
        assert resp.status_code == 201, resp.content

    resp = api_client.post(
        "/auth/register", {"username": "third", "password": "a-long-password-1"}, format="json"
    )

    assert_api_error(resp, code="RATE_LIMITED", status=429)
    assert not User.objects.filter(username="third").exists()


def test_registering_an_eight_space_password_is_400_validation_error():
    resp = APIClient().post("/auth/register", {"username": "alice", "password": " " * 8}, format="json")

    body = assert_api_error(resp, code="VALIDATION_ERROR", status=400)
    assert body["errors"]["password"], body
    assert not User.objects.filter(username="alice").exists()


def test_registering_a_mostly_invisible_password_is_400_validation_error():
    password = "ab \t\u200b\u00a0  \n  cd  \u200b"  # four visible characters, padded to 16

    resp = APIClient().post("/auth/register", {"username": "alice", "password": password}, format="json")

    assert_api_error(resp, code="VALIDATION_ERROR", status=400)
