"""Support staff's admin: the changelists load without leaking credentials, and the destructive
"disable accounts" action confirms first, then calls the same service as the API."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from chatsite.accounts.models import SecurityEvent, Session, User
from chatsite.accounts.tokens import hash_token
from tests.conftest import login
from tests.factories import UserFactory

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
        {"action": "disable_accounts", "_selected_action": [v.pk for v in victims], "confirm": "yes"},
    )

    assert resp.status_code == 302
    assert [str(m) for m in get_messages(resp.wsgi_request)] == ["Disabled 2 account(s)."]
    assert set(User.objects.filter(disabled=True)) == set(victims)
    assert not Session.objects.filter(user__in=victims, revoked_at__isnull=True).exists()
    assert Session.objects.filter(user=bystander, revoked_at__isnull=True).count() == 1
    assert SecurityEvent.objects.filter(kind=SecurityEvent.Kind.ACCOUNT_DISABLED).count() == 2


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
