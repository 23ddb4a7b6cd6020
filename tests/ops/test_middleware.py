"""ops/middleware.py: probes answer only GET/HEAD (405 JSON with Allow otherwise), and the ASGI
access log writes one redacted JSON line per response and per WebSocket handshake and close."""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.test import AsyncClient

from chatsite.logs import JsonFormatter, RedactSecretsFilter, RequestIdFilter
from chatsite.request_logs import AccessLogMiddleware
from tests.conftest import assert_api_error

TICKET = "Zx9" + "a" * 40


@pytest.mark.parametrize("path", ["/health", "/health/database", "/ready", "/live", "/metrics"])
@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_unsafe_method_on_a_probe_is_a_json_405_with_allow(client, path, method):
    resp = getattr(client, method)(path)

    assert_api_error(resp, code="METHOD_NOT_ALLOWED", status=405)
    assert resp["Allow"] == "GET, HEAD"
    assert resp["X-Request-ID"]


async def test_unsafe_method_on_a_probe_is_a_json_405_on_the_async_path():
    resp = await AsyncClient().post("/health")

    assert_api_error(resp, code="METHOD_NOT_ALLOWED", status=405)


def test_head_on_a_probe_is_still_answered(client):
    assert client.head("/live").status_code == 200


@pytest.fixture
def access_log():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactSecretsFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("chatsite.access")
    logger.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)


def _http_scope(query: bytes) -> dict:
    return {
        "type": "http",
        "method": "GET",
        "path": "/dm/sse",
        "query_string": query,
        "headers": [(b"x-forwarded-for", b"1.2.3.4")],
        "client": ("198.51.100.7", 4000),
    }


async def test_access_line_for_http_is_json_with_redacted_query_and_the_response_request_id(access_log):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-request-id", b"req-9")]})
        await send({"type": "http.response.body", "body": b"hello", "more_body": True})
        await send({"type": "http.response.body", "body": b"!"})

    async def send(message):
        pass

    await AccessLogMiddleware(app)(_http_scope(f"ticket={TICKET}&cursor=5".encode()), None, send)

    [line] = access_log()
    assert line["message"] == "GET /dm/sse 200"
    assert line["query"] == "ticket=[redacted]&cursor=5"
    assert line["request_id"] == "req-9"
    assert line["bytes"] == 6
    assert line["client_ip"] == "198.51.100.7"  # the forged X-Forwarded-For is not believed
    assert TICKET not in json.dumps(line)


async def test_access_line_is_written_when_the_app_fails(access_log):
    async def app(scope, receive, send):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await AccessLogMiddleware(app)(_http_scope(b""), None, None)

    [line] = access_log()
    assert line["message"] == "GET /dm/sse -"


async def test_websocket_gets_a_handshake_line_and_a_close_line_with_one_request_id(access_log):
    async def app(scope, receive, send):
        await send({"type": "websocket.accept"})
        await receive()
        await send({"type": "websocket.close", "code": 4401})

    async def receive():
        return {"type": "websocket.receive", "text": "{}"}

    async def send(message):
        pass

    scope = {"type": "websocket", "path": "/ws", "query_string": f"ticket={TICKET}".encode(), "headers": []}
    await AccessLogMiddleware(app)({**scope, "client": ("127.0.0.1", 1)}, receive, send)

    opened, closed = access_log()
    assert (opened["message"], closed["message"]) == ("WS /ws 101", "WS /ws closed 4401")
    assert opened["query"] == closed["query"] == "ticket=[redacted]"
    assert opened["request_id"] == closed["request_id"] and len(opened["request_id"]) == 32


async def test_refused_websocket_handshake_is_logged_as_403(access_log):
    async def app(scope, receive, send):
        await send({"type": "websocket.close", "code": 403})

    async def send(message):
        pass

    scope = {"type": "websocket", "path": "/ws", "query_string": b"", "headers": [], "client": None}
    await AccessLogMiddleware(app)(scope, None, send)

    [line] = access_log()
    assert line["message"] == "WS /ws 403"
