"""Structured logs: one JSON object per line, tagged with the request id, with secrets scrubbed.

The server relays ciphertext and holds bearer tokens, so a log line must never carry a token,
password, key or ciphertext. `RedactSecretsFilter` scrubs the record on every handler it is attached
to, and `JsonFormatter` scrubs its output once more, so a handler configured without the filter
still cannot leak.

A value is secret by the name it is given (`password=…`, `"ciphertext": …`, `?ticket=…`,
`Authorization: …`) or by its shape (`Bearer <credential>`, long random base64 or hex, a long random
query-string value). Names are compared word by word (`identity_key`, `X-CSRFToken`, `new_password1`),
so ordinary words that merely contain one ("Unauthorized: /auth/login", "keyboard") survive.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

# Set by chatsite.request_logs for the life of a request; asgiref copies it into sync_to_async threads.
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

REDACTED = "[redacted]"

# Words of a name (split at "_", "-", ".", case changes and digits) that make its value a secret.
# "key" covers identity_key, public_key, api_key: public keys are not secret, but they identify
# devices and never help a log reader. "sessionid" is Django's session cookie; a session's id
# ("session_id", a UUID) is not a credential and stays readable.
_PASSWORD_WORDS = frozenset({"password", "passwords", "passwd", "pwd", "passphrase", "secret", "secrets"})
_SECRET_WORDS = _PASSWORD_WORDS | {
    "token",
    "tokens",
    "ticket",
    "tickets",
    "authorization",
    "cookie",
    "cookies",
    "csrf",
    "csrftoken",
    "csrfmiddlewaretoken",
    "sessionid",
    "ciphertext",
    "ciphertexts",
    "signature",
    "signatures",
    "key",
    "keys",
    "prekey",
    "prekeys",
    "apikey",
    "credential",
    "credentials",
    "private",
}
# Joined compounds ("accesstoken", "dbpassword") end in one of these.
_SECRET_ENDINGS = ("token", "tokens", "password", "passwd", "secret", "ticket", "ciphertext")
# ...unless the name says the value is only a measure of the secret (sizes, counts, times).
_HARMLESS_LAST_WORDS = frozenset({"count", "len", "length", "size", "at"})
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")

# A name in running text: not the middle of a longer word.
_NAME = r"(?<![\w.-])(?P<key>[A-Za-z_][\w.-]*)"
# = or : (with optional quotes around the name, as in JSON and reprs, also escaped JSON in JSON).
_SEP = r"""(?P<sep>(?:\\?["'])?\s*[:=]\s*)"""

# scheme://user:password@host (database and Redis URLs in connection errors).
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)([^@\s/]+)(@)")
# A credential after "Bearer" (16+ characters: "Bearer realm=..." and prose are not credentials).
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]{16,}=*")
# name=value, name: value, "name": "value", 'name': b'value', \"name\": \"value\" (JSON in JSON).
_KEY_VALUE = re.compile(
    _NAME + _SEP + r"""(?P<value>(?!\[redacted\])(?:\\"(?:[^"\\]|\\[^"])*\\"|b?"[^"]*"|b?'[^']*'"""
    r"""|\[[^\]]*\]|\{[^}]*\}|(?:bearer\s+|basic\s+)?(?!\[redacted\])[^\s,;&"'}\])]+))""",
    re.IGNORECASE,
)
# Passwords may contain spaces, so an unquoted one runs to the end of the line or a separator.
_PASSWORD_VALUE = re.compile(
    _NAME + _SEP + r"""(?P<value>(?!\[redacted\])[^\s"',;&}\]{\[][^\n"',;&}\]]*)""",
    re.IGNORECASE,
)
# A query-string value long and random enough to be a credential whatever its name (a cursor is
# digits, an id a lower-case hex UUID): ?x=<43 url-safe characters>.
_QUERY_VALUE = re.compile(r"(?P<lead>[?&][\w.-]+=)(?P<value>[A-Za-z0-9_~.-]{32,}={0,2})(?![A-Za-z0-9_~.=-])")
# Base64 runs long enough to be a token (43 chars), key (44) or ciphertext, and long hex (raw keys).
_BASE64_RUN = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{40,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX_RUN = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{64,}(?![0-9A-Za-z])")

_MAX_DEPTH = 6

# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


def _words(name: str) -> list[str]:
    return [word.lower() for word in _WORD.findall(name)]


def is_sensitive_name(name: str) -> bool:
    words = _words(name)
    if not words or words[-1] in _HARMLESS_LAST_WORDS:
        return False
    return any(word in _SECRET_WORDS or word.endswith(_SECRET_ENDINGS) for word in words)


def _is_password_name(name: str) -> bool:
    return any(word in _PASSWORD_WORDS or word.endswith(("password", "passwd")) for word in _words(name))


def _looks_random(run: str) -> bool:
    # Mixed case plus digits is what random base64 looks like; paths, identifiers, uuids and
    # request ids (lower-case hex) are not, so they survive. About 1 in 1,000 random tokens of
    # 43 characters has no digit: those still have an upper-case letter in roughly every other
    # character, which no CamelCase identifier has (at least one in five is the bar).
    uppers = sum(c.isupper() for c in run)
    if not uppers or not any(c.islower() for c in run):
        return False
    return any(c.isdigit() for c in run) or uppers * 5 >= len(run)


def _redacted_value(value: str) -> str:
    quote = ""
    if value.startswith('\\"'):
        quote = '\\"'
    elif value.lstrip("b")[:1] in ("'", '"'):
        quote = value.lstrip("b")[0]
    return f"{quote}{REDACTED}{quote}"


def _redact_pairs(pattern: re.Pattern[str], text: str, is_secret) -> str:
    """Replace the value of every name=value pair whose name `is_secret`. Not re.sub: a pair with
    an ordinary name must not swallow its value ("user: token=x" still has "token=x" to look at),
    so the search resumes right after the separator of a pair that is left alone."""
    out: list[str] = []
    pos = 0
    while (match := pattern.search(text, pos)) is not None:
        if is_secret(match["key"]):
            out.append(text[pos : match.start("value")] + _redacted_value(match["value"]))
            pos = match.end()
        else:
            out.append(text[pos : match.end("sep")])
            pos = match.end("sep")
    out.append(text[pos:])
    return "".join(out)


def _redact_query_value(match: re.Match[str]) -> str:
    value = match["value"]
    if re.fullmatch(r"[0-9a-f-]+", value):  # lower-case hex and UUIDs are ids, not credentials
        return match[0]
    return match["lead"] + REDACTED


def scrub_text(text: str) -> str:
    """Remove credentials, bearer tokens, name=secret pairs and random-looking blobs from text."""
    text = _URL_CREDENTIALS.sub(rf"\1{REDACTED}\3", text)
    # Pairs before bare bearer tokens, so "Authorization: Bearer x" loses the scheme too.
    text = _redact_pairs(_PASSWORD_VALUE, text, _is_password_name)
    text = _redact_pairs(_KEY_VALUE, text, is_sensitive_name)
    text = _QUERY_VALUE.sub(_redact_query_value, text)
    text = _BEARER.sub(rf"\1 {REDACTED}", text)
    text = _BASE64_RUN.sub(lambda m: REDACTED if _looks_random(m[0]) else m[0], text)
    return _HEX_RUN.sub(REDACTED, text)


def redact(value: Any, name: str | None = None, _depth: int = 0) -> Any:
    """A copy of `value` safe to log; `name` is the key it was found under, if any."""
    if value is None or isinstance(value, bool):
        return value  # cannot carry a secret
    if name is not None and is_sensitive_name(name):
        if isinstance(value, int | float) and not _is_password_name(name):
            return value
        return REDACTED
    if _depth > _MAX_DEPTH:
        return REDACTED
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return REDACTED  # raw bytes in a log are payloads: ciphertext or keys
    if isinstance(value, int | float):
        return value
    if isinstance(value, Mapping):
        return {k: redact(v, str(k), _depth + 1) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(redact(v, None, _depth + 1) for v in value)
    if isinstance(value, list | set | frozenset):
        return [redact(v, None, _depth + 1) for v in value]
    try:
        text = str(value)
    except Exception:
        return "[unprintable]"
    scrubbed = scrub_text(text)
    # Keep the object itself (other handlers may want it) unless its text had something to hide.
    return value if scrubbed == text else scrubbed


def redact_query_string(query: str) -> str:
    """A query string fit for an access line: values of secret names (`ticket`, `token`, ...)
    replaced; the rest is left to scrub_text (random-looking values) like any other text."""
    pairs = parse_qsl(query, keep_blank_values=True)
    return "&".join(f"{name}={REDACTED if is_sensitive_name(name) else value}" for name, value in pairs)


class RequestIdFilter(logging.Filter):
    """Tag each record with the current request id (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


class RedactSecretsFilter(logging.Filter):
    """Scrub secrets from the message, its args, the traceback and every `extra=` attribute."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, Mapping):
            record.msg = redact(record.msg)
            record.args = redact(record.args) if record.args else record.args
        else:
            try:
                # Merge args first: "password=%s" only says what the arg is once they meet.
                message = record.getMessage()
            except Exception:
                # Mismatched args: keep them apart (logging reports the error), but scrubbed.
                record.msg = scrub_text(str(record.msg))
                record.args = redact(record.args)
            else:
                record.msg = scrub_text(message)
                record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub_text(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub_text(record.stack_info)
        for name in [k for k in vars(record) if k not in _RECORD_ATTRS]:
            setattr(record, name, redact(getattr(record, name), name))
        return True


class JsonFormatter(_BaseJsonFormatter):
    """One JSON object per line: timestamp, level, logger, message, request_id, then the extras.

    `level` is lower-case so the runbook's `jq 'select(.level == "error")'` works as written.
    """

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["timestamp"] = datetime.fromtimestamp(record.created, tz=UTC).isoformat(
            timespec="milliseconds"
        )
        log_data["level"] = record.levelname.lower()
        log_data["logger"] = record.name
        log_data["message"] = record.message
        log_data["request_id"] = getattr(record, "request_id", None) or request_id_var.get()
        super().add_fields(log_data, record, message_dict)
        if record.exc_text and "exc_info" in log_data:
            log_data["exc_info"] = record.exc_text  # the filter's scrubbed copy

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        # Second line of defence for handlers that were configured without RedactSecretsFilter.
        return redact(log_data)
