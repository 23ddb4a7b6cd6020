"""JSON log lines: secrets never get through, and every line carries the request id."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import secrets

import pytest
from django.conf import settings
from django.test import AsyncClient

from chatsite.logs import JsonFormatter, RedactSecretsFilter, RequestIdFilter, request_id_var

TOKEN = secrets.token_urlsafe(32)  # the shape chatsite.accounts.tokens hands out
PASSWORD = "correct horse battery staple"
CIPHERTEXT = base64.b64encode(os.urandom(96)).decode()
IDENTITY_KEY = base64.b64encode(os.urandom(32)).decode()
SECRETS = [TOKEN, PASSWORD, "battery", CIPHERTEXT, IDENTITY_KEY, "s3cr3t-db-pass"]


@pytest.fixture
def capture():
    """A logger wired like settings.LOGGING's console handler, writing into a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactSecretsFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.ops.capture")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"leaked {secret[:12]}... in {text}"


def test_secrets_are_redacted_from_message_args_and_extras(capture):
    logger, stream = capture
    logger.warning(
        "login from %s with Authorization: Bearer %s password=%s",
        "10.0.0.1",
        TOKEN,
        PASSWORD,
        extra={
            "ciphertext": CIPHERTEXT,
            "identity_key": IDENTITY_KEY,
            "headers": {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"},
            "envelopes": [{"device_id": 7, "ciphertext": CIPHERTEXT}],
            "dsn": "postgres://app:s3cr3t-db-pass@db:5432/chatsite",
            "payload": CIPHERTEXT.encode(),
            "note": f"retrying with token={TOKEN}",
            "user_id": 42,
            "prekeys": 100,
            "passphrase": 123456,
        },
    )
    raw = stream.getvalue()
    _assert_clean(raw)
    assert raw.count("\n") == 1  # one JSON object per line
    [line] = _lines(stream)
    assert line["message"] == "login from 10.0.0.1 with Authorization: [redacted] password=[redacted]"
    assert line["ciphertext"] == "[redacted]"
    assert line["identity_key"] == "[redacted]"
    assert line["headers"] == {"Authorization": "[redacted]", "Accept": "application/json"}
    assert line["envelopes"] == [{"device_id": 7, "ciphertext": "[redacted]"}]
    assert line["dsn"] == "postgres://app:[redacted]@db:5432/chatsite"
    assert line["payload"] == "[redacted]"
    assert line["note"] == "retrying with token=[redacted]"
    assert line["passphrase"] == "[redacted]"  # a numeric password is still a password
    # Ordinary fields survive, and so do counts: a key or token is never a bare number.
    assert line["user_id"] == 42
    assert line["prekeys"] == 100


def test_bare_tokens_and_ciphertext_in_args_are_redacted(capture):
    logger, stream = capture
    logger.info("relaying %s for %s", CIPHERTEXT, TOKEN)
    logger.info({"event": "prekeys", "public_key": IDENTITY_KEY, "keys": [IDENTITY_KEY]})
    _assert_clean(stream.getvalue())
    first, second = _lines(stream)
    assert first["message"] == "relaying [redacted] for [redacted]"
    assert second["event"] == "prekeys"
    assert second["public_key"] == "[redacted]"


def test_a_random_token_without_a_digit_is_redacted_too(capture):
    logger, stream = capture
    token = "YxsnCUNJCIwFVXl_fomuDMlyUACxgTgbZUhTyMTTjto"  # token_urlsafe(32) output, no digit
    logger.info("relaying for %s", token)
    assert token not in stream.getvalue()


def test_a_long_camel_case_identifier_is_not_taken_for_a_token(capture):
    logger, stream = capture
    name = "GroupMessageDeliveryPositionRepairTaskHandler"
    logger.info("running %s", name)
    assert _lines(stream)[0]["message"] == f"running {name}"


def test_tracebacks_are_redacted(capture):
    logger, stream = capture
    try:
        raise ValueError(f"bad credentials password={PASSWORD} token {TOKEN}")
    except ValueError:
        logger.exception("login failed")
    _assert_clean(stream.getvalue())
    [line] = _lines(stream)
    assert "ValueError: bad credentials password=[redacted]" in line["exc_info"]


def test_formatter_redacts_even_without_the_filter():
    formatter = JsonFormatter()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token=%s", (TOKEN,), None)
    record.password = PASSWORD
    out = formatter.format(record)
    _assert_clean(out)
    assert json.loads(out)["password"] == "[redacted]"


def test_json_line_shape_and_request_id(capture):
    logger, stream = capture
    token = request_id_var.set("req-123")
    try:
        logger.info("inside a request", extra={"group_id": 5})
    finally:
        request_id_var.reset(token)
    logger.info("outside any request")
    inside, outside = _lines(stream)
    assert list(inside)[:5] == ["timestamp", "level", "logger", "message", "request_id"]
    assert inside["level"] == "info"
    assert inside["logger"] == "tests.ops.capture"
    assert inside["request_id"] == "req-123"
    assert inside["group_id"] == 5
    assert inside["timestamp"].endswith("+00:00")
    assert outside["request_id"] is None


def test_settings_wire_the_console_handler():
    console = settings.LOGGING["handlers"]["console"]
    assert console["formatter"] == "json"
    assert console["filters"] == ["request_id", "redact"]
    [handler] = [h for h in logging.getLogger().handlers if isinstance(h.formatter, JsonFormatter)]
    assert {type(f) for f in handler.filters} == {RequestIdFilter, RedactSecretsFilter}


@pytest.mark.django_db
def test_request_id_is_echoed_or_generated(client):
    resp = client.get("/nope", secure=True, HTTP_X_REQUEST_ID="lb-7f3a.01")
    assert resp.status_code == 404
    assert resp["X-Request-ID"] == "lb-7f3a.01"

    for insane in ["has spaces", "x" * 65, "<script>", "Bearer abc"]:
        generated = client.get("/nope", secure=True, HTTP_X_REQUEST_ID=insane)["X-Request-ID"]
        assert len(generated) == 32 and int(generated, 16) >= 0

    first = client.get("/live")["X-Request-ID"]
    assert first != client.get("/live")["X-Request-ID"]


@pytest.fixture
def django_request_log():
    """Capture django.request's lines ("Not Found: ...") through our filters and formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactSecretsFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("django.request")
    level = logger.level
    logger.setLevel(logging.WARNING)  # the project logs only its errors (see the test below)
    logger.addHandler(handler)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.mark.django_db
def test_django_request_log_lines_carry_the_request_id(client, django_request_log):
    resp = client.get("/nope", secure=True, HTTP_X_REQUEST_ID="trace-404")
    assert resp.status_code == 404
    [line] = _lines(django_request_log)
    assert line["message"] == "Not Found: /nope"
    assert line["request_id"] == "trace-404"
    assert request_id_var.get() is None  # cleared once the response was closed


@pytest.mark.django_db
async def test_request_id_on_the_async_path(django_request_log):
    resp = await AsyncClient().get("/nope", secure=True, headers={"X-Request-ID": "async-1"})
    assert resp.status_code == 404
    assert resp["X-Request-ID"] == "async-1"
    assert [line["request_id"] for line in _lines(django_request_log)] == ["async-1"]


@pytest.mark.parametrize(
    "text",
    [
        "Unauthorized: /auth/login",
        "Forbidden (CSRF cookie not set.): /auth/logout",
        "keyboard: us, monkey=3, turnkey: yes",
        "session_id=6f1e0b8a-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
        "GET /dm/messages?since=40&limit=100&conversation_id=6f1e0b8a-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
        'WWW-Authenticate: Bearer realm="api"',
        "bearer tokens never go in URLs",
        "prekeys_count=7 token_size: 43",
    ],
)
def test_ordinary_words_that_contain_a_secret_name_are_not_redacted(capture, text):
    logger, stream = capture
    logger.warning(text)
    [line] = _lines(stream)
    assert line["message"] == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"GET /dm/sse?ticket={TOKEN}&cursor=5", "GET /dm/sse?ticket=[redacted]&cursor=5"),
        (f"GET /ws?cursor=3&token={TOKEN}", "GET /ws?cursor=3&token=[redacted]"),
        # By shape, whatever the parameter is called.
        (f"GET /ws?t={TOKEN}", "GET /ws?t=[redacted]"),
        (f"HTTP_AUTHORIZATION: Bearer {TOKEN}", "HTTP_AUTHORIZATION: [redacted]"),
        (f"sent Bearer {TOKEN} upstream", "sent Bearer [redacted] upstream"),
        ("X-CSRFToken: abc123", "X-CSRFToken: [redacted]"),
        (
            '{"identityKey": "abc", "new_password1": "hunter2"}',
            '{"identityKey": "[redacted]", "new_password1": "[redacted]"}',
        ),
        # A pair with an ordinary name does not hide the secret pair in its value.
        (f"user: token={TOKEN}", "user: token=[redacted]"),
    ],
)
def test_secrets_are_redacted_by_name_and_by_shape(capture, text, expected):
    logger, stream = capture
    logger.warning(text)
    [line] = _lines(stream)
    assert line["message"] == expected


def test_ordinary_extras_keep_their_values_and_secret_ones_do_not(capture):
    logger, stream = capture
    logger.info(
        "x", extra={"session_id": "6f1e0b8a", "monkey": "banana", "stream_ticket": "abc", "api_key": "k"}
    )
    [line] = _lines(stream)
    assert (line["session_id"], line["monkey"]) == ("6f1e0b8a", "banana")
    assert (line["stream_ticket"], line["api_key"]) == ("[redacted]", "[redacted]")


def test_a_4xx_is_logged_once_by_the_access_line_not_again_by_django_request():
    request_logger = logging.getLogger("django.request")
    assert not request_logger.isEnabledFor(logging.WARNING)  # "Not Found: /x" would repeat the 404
    assert request_logger.isEnabledFor(logging.ERROR)  # a 500 and its traceback still are


def test_celery_logs_through_our_json_handler():
    from chatsite.celery import app

    assert app.conf.worker_hijack_root_logger is False
    assert any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)
