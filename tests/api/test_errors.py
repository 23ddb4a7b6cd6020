"""The one error model: every error is {"code", "detail"} JSON with the runbook's status, never an
HTML page or a stack trace; plus the OpenAPI schema and its doc page."""

from __future__ import annotations

import pytest
from django.http import HttpResponse
from django.test import Client, override_settings
from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.test import APIClient
from rest_framework.views import APIView

from chatsite.api.errors import ERRORS
from tests.conftest import assert_api_error, client_for
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


# A throwaway urlconf for the unhandled-exception tests (ROOT_URLCONF=this module).
class ExplodingApiView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    def get(self, request):
        raise RuntimeError("boom: secret internals")


def exploding_django_view(request) -> HttpResponse:
    raise RuntimeError("boom: secret internals")


urlpatterns = [
    path("explode", ExplodingApiView.as_view()),
    path("explode-plain", exploding_django_view),
]
handler500 = "chatsite.api.errors.handler500"

# The quick-reference tables of seeds 000 and 001, plus the flag code.
RUNBOOK_STATUS = {
    "GROUP_FULL": 409,
    "EPOCH_STALE": 409,
    "BANNED": 403,
    "NOT_MEMBER": 403,
    "SENDER_KEY_REQUIRED": 409,
    "MAX_USES": 409,
    "GONE": 410,
    "RATE_LIMITED": 429,
    "OWNER_REQUIRED": 409,
    "PREKEYS_EXHAUSTED": 409,
    "BUNDLE_STALE": 409,
    "DEVICE_REVOKED": 409,
    "BLOCKED": 403,
    "FEATURE_DISABLED": 403,
}


@pytest.mark.parametrize("method", ["get", "post"])
def test_unknown_route_is_404_json_envelope(method):
    resp = getattr(APIClient(), method)("/no/such/route")

    body = assert_api_error(resp, code="NOT_FOUND", status=404)
    assert "/no/such/route" in body["detail"]
    assert b"<html" not in resp.content.lower()


def test_unauthenticated_is_401():
    resp = APIClient().get("/auth/sessions")

    assert_api_error(resp, code="UNAUTHENTICATED", status=401)
    assert resp["WWW-Authenticate"].startswith("Bearer")


def test_bad_bearer_token_is_401():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-real-token")

    assert_api_error(client.get("/auth/sessions"), code="UNAUTHENTICATED", status=401)


def test_malformed_json_body_is_400_bad_request():
    resp = APIClient().post("/auth/login", data='{"username": "a", ', content_type="application/json")

    assert_api_error(resp, code="BAD_REQUEST", status=400)


def test_missing_fields_are_400_validation_error_with_field_errors():
    resp = APIClient().post("/auth/login", {}, format="json")

    body = assert_api_error(resp, code="VALIDATION_ERROR", status=400)
    assert set(body["errors"]) == {"username", "password"}


def test_wrong_method_is_405():
    assert_api_error(APIClient().get("/auth/login"), code="METHOD_NOT_ALLOWED", status=405)


def test_wrong_method_on_authenticated_route_is_405():
    client = client_for(UserFactory())

    assert_api_error(client.put("/auth/sessions", {}, format="json"), code="METHOD_NOT_ALLOWED", status=405)


def test_trailing_slash_is_404_json_not_a_redirect():
    resp = APIClient().post("/auth/login/", {"username": "a", "password": "b"}, format="json")

    assert_api_error(resp, code="NOT_FOUND", status=404)
    assert "Location" not in resp


def test_disallowed_host_is_400_json_envelope():
    resp = APIClient().get("/auth/sessions", HTTP_HOST="evil.example")

    assert_api_error(resp, code="BAD_REQUEST", status=400)


def test_seed_error_codes_have_the_runbook_status():
    assert {code: ERRORS[code].status for code in RUNBOOK_STATUS} == RUNBOOK_STATUS


def test_every_registered_code_has_an_error_status_and_detail():
    for code, spec in ERRORS.items():
        assert 400 <= spec.status < 600, code
        assert spec.detail, code


@override_settings(ROOT_URLCONF=__name__)
def test_unhandled_exception_in_api_view_is_500_json_envelope():
    resp = APIClient().get("/explode")

    assert_api_error(resp, code="INTERNAL_ERROR", status=500)
    assert b"boom" not in resp.content
    assert b"Traceback" not in resp.content


@override_settings(ROOT_URLCONF=__name__)
def test_unhandled_exception_in_plain_django_view_is_500_json_envelope():
    resp = Client(raise_request_exception=False).get("/explode-plain")

    assert_api_error(resp, code="INTERNAL_ERROR", status=500)
    assert b"boom" not in resp.content


def test_schema_serves_openapi_with_the_auth_routes():
    resp = APIClient().get("/schema/")

    assert resp.status_code == 200
    content = resp.content.decode()
    assert "openapi" in content
    assert "/auth/login" in content


def test_schema_docs_serve_an_html_page():
    resp = Client().get("/schema/docs/")

    assert resp.status_code == 200
    assert resp["Content-Type"].startswith("text/html")
    assert "swagger" in resp.content.decode().lower()
