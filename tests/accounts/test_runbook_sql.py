"""Seed 002 "Compromised User Account": the runbook's SQL works against our schema.

The seed was written for another product and says `UPDATE users SET disabled = true WHERE id = ...`;
our users table's primary-key column is `account_id`, so the statements are
run here as an operator would run them in psql, with `account_id`.
"""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.db.utils import ProgrammingError
from rest_framework.test import APIClient

from chatsite.accounts.models import Session, User
from tests.conftest import assert_api_error, login
from tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

INVALIDATE_SESSIONS = "DELETE FROM sessions WHERE user_id = %s"
DISABLE_ACCOUNT = "UPDATE users SET disabled = true WHERE account_id = %s"


def sessions_status(token: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get("/auth/sessions").status_code


def run_sql(sql: str, *params) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def test_runbook_delete_sessions_ends_the_users_tokens():
    user, bystander = UserFactory(), UserFactory()
    tokens = [login(user), login(user)]
    bystander_token = login(bystander)

    deleted = run_sql(INVALIDATE_SESSIONS, user.pk)

    assert deleted == 2
    assert all(sessions_status(t) == 401 for t in tokens)
    assert sessions_status(bystander_token) == 200


def test_runbook_disable_account_ends_its_token_and_blocks_log_in():
    user = UserFactory()
    token = login(user)

    updated = run_sql(DISABLE_ACCOUNT, user.pk)

    assert updated == 1
    assert User.objects.get(pk=user.pk).disabled is True
    assert sessions_status(token) == 401
    resp = APIClient().post(
        "/auth/login", {"username": user.username, "password": DEFAULT_PASSWORD}, format="json"
    )
    assert_api_error(resp, code="ACCOUNT_DISABLED", status=403)


def test_runbook_statements_in_order_leave_no_sessions_and_a_disabled_account():
    user = UserFactory()
    token = login(user)

    run_sql(INVALIDATE_SESSIONS, user.pk)
    run_sql(DISABLE_ACCOUNT, user.pk)

    assert not Session.objects.filter(user=user).exists()
    assert User.objects.get(pk=user.pk).disabled is True
    assert sessions_status(token) == 401


def test_seeds_literal_where_id_does_not_exist_in_our_schema():
    """Documents the one mapping an operator must make: `id` is `account_id` here."""
    user = UserFactory()

    with pytest.raises(ProgrammingError), transaction.atomic():
        run_sql("UPDATE users SET disabled = true WHERE id = %s", user.pk)

    assert User.objects.get(pk=user.pk).disabled is False
