"""REST bodies go through the depth-limited JSON parser (chatsite/api/parsers.py): JSON nested
1,000 deep is a 400 VALIDATION_ERROR on every endpoint, never a 500."""

from __future__ import annotations

import pytest

from tests.conftest import assert_api_error, client_for

DEEP = "[" * 1000 + "]" * 1000


def _post(client, path: str, body: str):
    return client.post(path, body, content_type="application/json")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "authenticated"),
    [
        ("/auth/register", False),
        ("/auth/login", False),
        ("/contacts", True),
        ("/blocks", True),
        ("/e2ee/devices", True),
        ("/dm/conversations", True),
        ("/dm/conversations/1/messages", True),
        ("/dm/ack", True),
    ],
)
def test_json_nested_1000_deep_is_a_validation_error(api_client, user, path, authenticated):
    client = client_for(user) if authenticated else api_client

    resp = _post(client, path, '{"user_id": ' + DEEP + "}")

    body = assert_api_error(resp, code="VALIDATION_ERROR", status=400)
    assert "levels deep" in body["detail"]


@pytest.mark.django_db
def test_the_depth_limit_is_the_json_max_depth_setting(api_client, settings):
    settings.JSON_MAX_DEPTH = 3

    too_deep = _post(api_client, "/auth/login", '{"username": [[["x"]]]}')
    at_limit = _post(api_client, "/auth/login", '{"username": [["x"]]}')

    assert_api_error(too_deep, code="VALIDATION_ERROR", status=400)
    assert "at most 3 levels" in too_deep.json()["detail"]
    # Within the limit the body is parsed and validated as usual (a list is not a username).
    body = assert_api_error(at_limit, code="VALIDATION_ERROR", status=400)
    assert "username" in body["errors"]


@pytest.mark.django_db
def test_a_body_that_is_not_json_is_still_a_bad_request(api_client):
    assert_api_error(_post(api_client, "/auth/login", "{not json"), code="BAD_REQUEST", status=400)


@pytest.mark.django_db
def test_nan_is_not_json(api_client):
    assert_api_error(_post(api_client, "/auth/login", '{"username": NaN}'), code="BAD_REQUEST", status=400)
