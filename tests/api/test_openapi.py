"""The OpenAPI schema is the API: it generates cleanly, documents every path the server answers
(DRF views and the plain ones: /dm/sse, the probes), and tests/openapi.py checks every response
of the suite against it (tests/conftest.py). These tests pin the schema's shape and prove the
checker refuses what it must."""

from __future__ import annotations

import functools
import json
from io import StringIO

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.test import AsyncClient

from chatsite.api.errors import ERRORS
from chatsite.api.schema import error_codes_of
from tests.dm.helpers import party
from tests.openapi import SchemaMismatch


@pytest.fixture
def schema(_openapi_checker) -> dict:
    return _openapi_checker.schema


def _json_schema_of(schema: dict, path: str, method: str, status: int) -> dict:
    return schema["paths"][path][method]["responses"][str(status)]["content"]["application/json"]["schema"]


def _component(schema: dict, ref_holder: dict) -> dict:
    return schema["components"]["schemas"][ref_holder["$ref"].rsplit("/", 1)[1]]


def test_openapi_schema_generates_and_validates_without_warnings(tmp_path):
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--file", str(out), "--validate", "--fail-on-warn", stderr=StringIO())
    text = out.read_text()
    for path in ("/auth/login:", "/e2ee/bundles/{user_id}:", "/dm/conversations/{conversation_id}/messages:"):
        assert path in text
    assert "bearerAuth" in text


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/contacts", "contacts"),
        ("/blocks", "blocks"),
        ("/dm/conversations", "conversations"),
        ("/auth/sessions", "sessions"),
        ("/e2ee/devices", "devices"),
    ],
)
def test_list_endpoints_are_documented_as_the_object_that_wraps_the_list(schema, path, key):
    body = _component(schema, _json_schema_of(schema, path, "get", 200))

    assert body["type"] == "object"
    assert body["properties"][key]["type"] == "array"


def test_both_success_statuses_are_documented_where_both_happen(schema):
    for path in ("/dm/conversations", "/dm/conversations/{conversation_id}/messages"):
        assert {"200", "201"} <= set(schema["paths"][path]["post"]["responses"]), path


@pytest.mark.parametrize(
    ("path", "method", "expected"),
    [
        (
            "/auth/login",
            "post",
            {
                400: {"VALIDATION_ERROR", "BAD_REQUEST"},
                401: {"INVALID_CREDENTIALS"},
                403: {"ACCOUNT_DISABLED"},
                413: {"PAYLOAD_TOO_LARGE"},
                429: {"RATE_LIMITED"},
            },
        ),
        ("/auth/register", "post", {400: {"VALIDATION_ERROR"}, 409: {"CONFLICT"}, 429: {"RATE_LIMITED"}}),
        (
            "/dm/conversations/{conversation_id}/messages",
            "post",
            {
                400: {"VALIDATION_ERROR", "BAD_REQUEST"},
                401: {"UNAUTHENTICATED"},
                403: {"FEATURE_DISABLED", "BLOCKED"},
                404: {"NOT_FOUND"},
                409: {"DEVICE_REQUIRED", "DEVICE_REVOKED", "DEVICE_MISMATCH"},
                413: {"PAYLOAD_TOO_LARGE"},
                429: {"RATE_LIMITED"},
            },
        ),
    ],
)
def test_error_responses_name_their_codes(schema, path, method, expected):
    responses = schema["paths"][path][method]["responses"]
    for status, codes in expected.items():
        assert codes <= set(error_codes_of(responses[str(status)])), (path, status)


def test_every_error_response_is_the_envelope_with_codes_of_its_status(schema):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if not status.startswith(("4", "5")) or path.startswith(("/health", "/ready", "/live")):
                    continue
                if path == "/metrics" and status == "503":
                    continue  # the probe's own failure body, like the other probes
                codes = error_codes_of(response)
                assert codes, (method, path, status)
                assert {ERRORS[code].status for code in codes} == {int(status)}, (method, path, status)


def test_rate_limited_responses_document_the_retry_header(schema):
    response = schema["paths"]["/auth/login"]["post"]["responses"]["429"]
    assert response["headers"]["X-Retry-After"]["required"] is True


def test_dm_sse_and_the_probes_are_documented(schema):
    sse = schema["paths"]["/dm/sse"]["get"]
    assert "text/event-stream" in sse["responses"]["200"]["content"]
    assert {"401", "403", "409", "429"} <= set(sse["responses"])
    assert {"bearerAuth": []} in sse["security"] and {"streamTicket": []} in sse["security"]
    for path in ("/health", "/health/database", "/ready", "/live", "/metrics"):
        assert {"200", "503"} <= set(schema["paths"][path]["get"]["responses"]), path


# --- The checker refuses what the schema does not document -----------------------------------


@pytest.fixture
def check(_openapi_checker):
    return functools.partial(_check, _openapi_checker)


def _check(openapi_checker, **overrides):
    response = {
        "method": "GET",
        "path": "/contacts",
        "status": 200,
        "content_type": "application/json",
        "body": json.dumps({"contacts": []}).encode(),
        "headers": {},
    }
    openapi_checker.check(**{**response, **overrides})


def test_checker_accepts_a_documented_response(check):
    check()


def test_checker_refuses_an_undocumented_status_naming_path_method_and_status(check):
    with pytest.raises(SchemaMismatch, match=r"GET /contacts -> 418: status 418 is not documented"):
        check(status=418, body=b'{"code": "BAD_REQUEST", "detail": "x"}')


def test_checker_refuses_a_bare_list_where_the_schema_wraps_it(check):
    with pytest.raises(SchemaMismatch, match="does not match the schema"):
        check(body=b"[]")


def test_checker_refuses_an_error_code_the_status_does_not_carry_there(check):
    with pytest.raises(SchemaMismatch, match="does not match the schema"):
        check(status=401, body=b'{"code": "INVALID_CREDENTIALS", "detail": "x"}')


def test_checker_refuses_a_429_without_its_retry_header(check):
    with pytest.raises(SchemaMismatch, match="X-Retry-After"):
        check(
            method="POST",
            path="/contacts",
            status=429,
            body=b'{"code": "RATE_LIMITED", "detail": "x", "retry_in_seconds": 3}',
        )


def test_checker_allows_undocumented_paths_only_the_404_envelope(check):
    check(path="/no/such/route", status=404, body=b'{"code": "NOT_FOUND", "detail": "x"}')
    with pytest.raises(SchemaMismatch, match="undocumented path may only answer the NOT_FOUND envelope"):
        check(path="/no/such/route", status=200, body=b"{}")


def test_checker_allows_undocumented_methods_only_the_405_envelope(check):
    check(method="PUT", status=405, body=b'{"code": "METHOD_NOT_ALLOWED", "detail": "x"}')
    with pytest.raises(SchemaMismatch, match="METHOD_NOT_ALLOWED envelope"):
        check(method="PUT", status=200)


def test_checker_checks_the_content_type_of_a_stream(check):
    with pytest.raises(SchemaMismatch, match="content type 'application/json' is not documented"):
        check(path="/dm/sse", body=None)


@pytest.mark.django_db(transaction=True)
async def test_dm_sse_answers_the_documented_event_stream():
    """Checked by the conftest fixture like every response: status and content type (the body is
    a stream and is not read here; tests/dm/test_delivery_streams.py reads it)."""
    device_party = await database_sync_to_async(party)()

    resp = await AsyncClient().get("/dm/sse", headers={"Authorization": f"Bearer {device_party.token}"})

    assert resp.status_code == 200
    assert resp["Content-Type"].startswith("text/event-stream")
    resp.close()
