from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from chatsite.accounts.models import SecurityEvent, Session
from tests.conftest import client_for
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_disable_account_dry_run_changes_nothing():
    user = UserFactory()
    client = client_for(user)
    out = StringIO()
    call_command("disable_account", user.username, "--dry-run", stdout=out)
    assert "revoke 1 live session" in out.getvalue()
    user.refresh_from_db()
    assert user.disabled is False
    assert client.get("/auth/sessions").status_code == 200


def test_disable_account_revokes_sessions_and_records_the_reason():
    user = UserFactory()
    client = client_for(user)
    out = StringIO()
    call_command("disable_account", user.username, "--yes", "--reason", "credential stuffing", stdout=out)
    user.refresh_from_db()
    assert user.disabled is True
    assert "revoked 1 session" in out.getvalue()
    assert client.get("/auth/sessions").status_code == 401
    event = SecurityEvent.objects.get(kind=SecurityEvent.Kind.ACCOUNT_DISABLED, user=user)
    assert event.data["reason"] == "credential stuffing"


def test_revoke_sessions_keeps_the_account_enabled():
    user = UserFactory()
    client_for(user), client_for(user)
    call_command("revoke_sessions", user.username, "--yes", stdout=StringIO())
    user.refresh_from_db()
    assert user.disabled is False
    assert not Session.objects.filter(user=user, revoked_at__isnull=True).exists()


def test_commands_refuse_unknown_users():
    with pytest.raises(CommandError):
        call_command("disable_account", "nobody", "--yes", stdout=StringIO())
