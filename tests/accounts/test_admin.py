"""Support staff's admin: the changelists load without leaking credentials, and the destructive
"disable accounts" action confirms first, then calls the same service as the API."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.messages import get_messages
from django.test import Client
from rest_framework.test import APIClient

from chatsite.accounts.models import SecurityEvent, Session, User
from chatsite.accounts.tokens import hash_token
from tests.conftest import login
from tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

USERS_URL = "/admin/accounts/user/"


def staff_client() -> Client:
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


@pytest.mark.parametrize(
    "url",
    [USERS_URL, "/admin/accounts/session/", "/admin/accounts/securityevent/"],
    ids=["users", "sessions", "security_events"],
)
def test_changelist_loads_without_token_hashes(url):
    user = UserFactory()
    token = login(user)
    SecurityEvent.objects.create(kind=SecurityEvent.Kind.LOGIN_FAILED, user=user, ip="10.0.0.1")

    resp = staff_client().get(url)

    assert resp.status_code == 200
    html = resp.content.decode()
    assert user.username in html
    assert hash_token(token) not in html
    assert token not in html


def test_session_change_page_does_not_show_the_token_hash():
    token = login(UserFactory())
    session = Session.objects.get(token_hash=hash_token(token))

    resp = staff_client().get(f"/admin/accounts/session/{session.pk}/change/")

    assert resp.status_code == 200
    assert hash_token(token) not in resp.content.decode()


def test_disable_action_shows_a_confirmation_page_first():
    victim = UserFactory()
    login(victim)

    resp = staff_client().post(USERS_URL, {"action": "disable_accounts", "_selected_action": [victim.pk]})

    assert resp.status_code == 200
    html = resp.content.decode()
    assert "Disable accounts" in html
    assert 'name="confirm" value="yes"' in html
    assert victim.username in html
    victim.refresh_from_db()
    assert victim.disabled is False
    assert Session.objects.filter(user=victim, revoked_at__isnull=True).count() == 1


def test_disable_action_confirmed_disables_and_revokes_sessions():
    victims = [UserFactory(), UserFactory()]
    bystander = UserFactory()
    for victim in victims:
        login(victim)
        login(victim)
    login(bystander)
    client = staff_client()

    resp = client.post(
        USERS_URL,
        {
            "action": "disable_accounts",
            "_selected_action": [v.pk for v in victims],
            "confirm": "yes",
            "reason": "spam reports #123",
        },
    )

    assert resp.status_code == 302
    assert [str(m) for m in get_messages(resp.wsgi_request)] == ["Disabled 2 account(s)."]
    assert set(User.objects.filter(disabled=True)) == set(victims)
    assert not Session.objects.filter(user__in=victims, revoked_at__isnull=True).exists()
    assert Session.objects.filter(user=bystander, revoked_at__isnull=True).count() == 1
    events = SecurityEvent.objects.filter(kind=SecurityEvent.Kind.ACCOUNT_DISABLED)
    assert [e.data["reason"] for e in events] == ["spam reports #123"] * 2


def test_disable_action_without_a_reason_asks_again_and_disables_nobody():
    victim = UserFactory()

    resp = staff_client().post(
        USERS_URL, {"action": "disable_accounts", "_selected_action": [victim.pk], "confirm": "yes"}
    )

    assert resp.status_code == 200
    assert "Give a reason." in resp.content.decode()
    victim.refresh_from_db()
    assert victim.disabled is False


def test_admin_actions_are_written_to_recent_actions():
    victim = UserFactory()
    client = staff_client()

    client.post(
        USERS_URL,
        {"action": "disable_accounts", "_selected_action": [victim.pk], "confirm": "yes", "reason": "abuse"},
    )
    client.post(USERS_URL, {"action": "enable_accounts", "_selected_action": [victim.pk]})

    entries = LogEntry.objects.filter(object_id=str(victim.pk)).order_by("pk")
    assert [e.get_change_message() for e in entries] == ["Disabled the account: abuse", "Enabled the account"]
    assert all(e.action_flag == CHANGE for e in entries)


def test_security_events_cannot_be_deleted_or_edited_in_the_admin():
    event = SecurityEvent.objects.create(kind=SecurityEvent.Kind.LOGIN_FAILED, ip="203.0.113.5", data={})
    client = staff_client()

    changelist = client.get("/admin/accounts/securityevent/")
    delete = client.post(f"/admin/accounts/securityevent/{event.pk}/delete/", {"post": "yes"})

    assert "delete_selected" not in changelist.content.decode()
    assert delete.status_code == 403
    assert SecurityEvent.objects.filter(pk=event.pk).exists()


def test_session_revoke_action_confirms_first_then_revokes():
    victim = UserFactory()
    token = login(victim)
    session = Session.objects.get(token_hash=hash_token(token))
    client = staff_client()
    url = "/admin/accounts/session/"

    page = client.post(url, {"action": "revoke_sessions", "_selected_action": [session.pk]})
    assert page.status_code == 200 and 'name="confirm" value="yes"' in page.content.decode()
    session.refresh_from_db()
    assert session.revoked_at is None

    done = client.post(url, {"action": "revoke_sessions", "_selected_action": [session.pk], "confirm": "yes"})
    assert done.status_code == 302
    assert [str(m) for m in get_messages(done.wsgi_request)] == ["Revoked 1 session(s)."]
    session.refresh_from_db()
    assert session.revoked_at is not None


# --- /admin/login/ through the log-in throttle (issue 11 item 8) -------------------------------

ADMIN_LOGIN = "/admin/login/"
ADMIN_IP, ATTACKER_IP = "10.0.0.1", "10.6.6.6"


def admin_login(client: Client, username: str, password: str, *, ip: str):
    return client.post(
        ADMIN_LOGIN, {"username": username, "password": password, "next": "/admin/"}, REMOTE_ADDR=ip
    )


def is_logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_admin_login_refuses_the_right_password_after_the_threshold_and_says_why(settings):
    staff = UserFactory(is_staff=True)
    for _ in range(15):
        admin_login(Client(), staff.username, "wrong", ip=ATTACKER_IP)
    client = Client()

    resp = admin_login(client, staff.username, DEFAULT_PASSWORD, ip=ATTACKER_IP)

    assert resp.status_code == 200
    assert "Too many failed log-ins; try again in" in resp.content.decode()
    assert not is_logged_in(client)
    failed = SecurityEvent.objects.filter(kind=SecurityEvent.Kind.LOGIN_FAILED, user=staff)
    assert failed.count() == settings.LOGIN_FAILURE_LIMIT
    assert all(e.data["channel"] == "admin" for e in failed)
    assert SecurityEvent.objects.filter(
        kind=SecurityEvent.Kind.LOGIN_LOCKED, user=staff, ip=ATTACKER_IP
    ).exists()


def test_admin_login_right_password_from_a_known_address_still_works():
    staff = UserFactory(is_staff=True)
    assert admin_login(Client(), staff.username, DEFAULT_PASSWORD, ip=ADMIN_IP).status_code == 302
    for i in range(30):
        admin_login(Client(), staff.username, "wrong", ip=f"10.6.6.{i + 1}")
    client = Client()

    resp = admin_login(client, staff.username, DEFAULT_PASSWORD, ip=ADMIN_IP)

    assert resp.status_code == 302, resp.content[:500]
    assert is_logged_in(client)


def test_admin_and_api_failures_count_in_the_same_windows(settings):
    staff = UserFactory(is_staff=True)
    half = settings.LOGIN_FAILURE_LIMIT // 2
    for _ in range(half):
        APIClient().post(
            "/auth/login",
            {"username": staff.username, "password": "wrong"},
            format="json",
            REMOTE_ADDR=ATTACKER_IP,
        )
    for _ in range(settings.LOGIN_FAILURE_LIMIT - half):
        admin_login(Client(), staff.username, "wrong", ip=ATTACKER_IP)

    resp = APIClient().post(
        "/auth/login",
        {"username": staff.username, "password": DEFAULT_PASSWORD},
        format="json",
        REMOTE_ADDR=ATTACKER_IP,
    )

    assert resp.status_code == 429


def test_admin_login_of_a_disabled_staff_account_is_refused_whatever_the_password():
    staff = UserFactory(is_staff=True, disabled=True)
    client = Client()

    right = admin_login(client, staff.username, DEFAULT_PASSWORD, ip=ADMIN_IP)
    wrong = admin_login(Client(), staff.username, "wrong", ip=ADMIN_IP)

    assert right.status_code == wrong.status_code == 200
    assert "This account is disabled." in right.content.decode()
    assert "This account is disabled." in wrong.content.decode()
    assert not is_logged_in(client)


def test_security_event_admin_does_not_show_a_password_typed_as_username():
    typed = "hunter2-typed-in-the-wrong-field"
    APIClient().post("/auth/login", {"username": typed, "password": "x"}, format="json")
    event = SecurityEvent.objects.get(kind=SecurityEvent.Kind.LOGIN_FAILED)

    pages = [
        staff_client().get(u)
        for u in ("/admin/accounts/securityevent/", f"/admin/accounts/securityevent/{event.pk}/change/")
    ]

    assert all(p.status_code == 200 and typed not in p.content.decode() for p in pages)
