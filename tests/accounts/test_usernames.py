"""Usernames (issue 11 item 13c): normalised (NFKC, case-folded), ASCII [a-z0-9_.-], 3-32
characters, unique case-insensitively in the database, and looked up by the normalised form."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from rest_framework.test import APIClient

from chatsite.accounts.models import User
from tests.conftest import assert_api_error
from tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def register(username: str):
    return APIClient().post(
        "/auth/register", {"username": username, "password": DEFAULT_PASSWORD}, format="json"
    )


def test_register_stores_the_name_lower_case():
    resp = register("Alice")

    assert resp.status_code == 201, resp.content
    assert resp.json()["username"] == "alice"
    assert User.objects.get(pk=resp.json()["user_id"]).username == "alice"


def test_register_a_case_variant_of_a_taken_name_is_409():
    UserFactory(username="admin")

    assert_api_error(register("ADMIN"), code="CONFLICT", status=409)


def test_register_a_full_width_variant_of_a_taken_name_is_409():
    UserFactory(username="admin")

    assert_api_error(register("ａｄｍｉｎ"), code="CONFLICT", status=409)


@pytest.mark.parametrize(
    "username",
    ["ädmin", "аdmin", "ad min", "admin!", "ab", "a" * 33, "ad\u200bmin"],
    ids=["latin_umlaut", "cyrillic_a", "space", "punctuation", "too_short", "too_long", "zero_width"],
)
def test_register_a_name_outside_the_alphabet_is_400_with_username_errors(username):
    body = assert_api_error(register(username), code="VALIDATION_ERROR", status=400)

    assert body["errors"]["username"], body
    assert not User.objects.exists()


def test_name_length_limits_are_the_settings():
    assert register("a" * settings.USERNAME_MIN_LENGTH).status_code == 201
    assert register("b" * settings.USERNAME_MAX_LENGTH).status_code == 201


def test_login_looks_the_account_up_by_its_normalised_name():
    user = UserFactory(username="alice")

    resp = APIClient().post("/auth/login", {"username": "ALICE", "password": DEFAULT_PASSWORD}, format="json")

    assert resp.status_code == 200, resp.content
    assert resp.json()["user_id"] == user.pk


def test_create_user_normalises_the_name_as_createsuperuser_does():
    assert User.objects.create_user(username="Bob", password=DEFAULT_PASSWORD).username == "bob"


def test_the_database_refuses_a_case_variant_written_by_raw_sql():
    UserFactory(username="admin")
    other = UserFactory()

    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE users SET username = 'ADMIN' WHERE account_id = %s", [other.pk])
