"""Unsafe methods on routes that do not exist are 404 JSON envelopes, not Django's HTML CSRF page
(chatsite/urls.py's catch-all is csrf_exempt); CSRF failures elsewhere are envelopes too, except
in the admin, which keeps Django's page."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.utils.module_loading import import_string

from tests.conftest import assert_api_error, client_for


@pytest.fixture
def csrf_client() -> Client:
    """A client that enforces CSRF like a browser request would meet it."""
    return Client(enforce_csrf_checks=True)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("delete", "/auth/sessions/not-a-uuid"),
        ("post", "/nonexistent"),
        ("post", "/auth/login/"),
        ("put", "/nonexistent"),
        ("patch", "/dm/nowhere"),
    ],
)
def test_unsafe_method_on_an_unmatched_route_is_a_json_404(csrf_client, method, path):
    resp = getattr(csrf_client, method)(path)

    body = assert_api_error(resp, code="NOT_FOUND", status=404)
    assert path in body["detail"]


@pytest.mark.django_db
def test_unmatched_route_with_a_bearer_token_is_a_json_404(user):
    resp = client_for(user).delete("/auth/sessions/not-a-uuid")

    assert_api_error(resp, code="NOT_FOUND", status=404)


@pytest.mark.django_db
def test_admin_login_keeps_django_csrf_protection_and_page(csrf_client):
    resp = csrf_client.post("/admin/login/", {"username": "x", "password": "y"})

    assert resp.status_code == 403
    assert resp["Content-Type"].startswith("text/html")


def test_csrf_failure_outside_the_admin_is_an_envelope(rf, settings):
    view = import_string(settings.CSRF_FAILURE_VIEW)

    resp = view(rf.post("/somewhere"), reason="CSRF cookie not set.")

    assert resp.status_code == 403
    assert json.loads(resp.content)["code"] == "PERMISSION_DENIED"
