"""Untrusted JSON in, for REST bodies and /ws frames alike: one parser, one depth limit.

`json.loads` recurses in C and raises RecursionError on deeply nested input (about 1,000 levels
on CPython, ~6 KB of brackets), which would escape as a 500 or kill a WebSocket consumer. Here any
input nested deeper than JSON_MAX_DEPTH is a 400 VALIDATION_ERROR before the parser recurses.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from chatsite.api.errors import ApiError


def _too_deep(raw: str, limit: int) -> bool:
    """Whether brackets nest deeper than `limit` outside strings. Cheap first: text with fewer
    opening brackets than the limit cannot nest deeper (str.count runs in C)."""
    if raw.count("[") + raw.count("{") <= limit:
        return False
    depth = 0
    in_string = escaped = False
    for ch in raw:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259), and echoing one back would not be JSON either.
    raise ValueError(f"{name} is not valid JSON")


def loads(raw: str | bytes) -> Any:
    """Parse untrusted JSON. Raises ApiError("VALIDATION_ERROR") when nested deeper than
    JSON_MAX_DEPTH, ValueError (json.JSONDecodeError, UnicodeDecodeError, NaN/Infinity) when not
    JSON."""
    text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
    limit = settings.JSON_MAX_DEPTH
    if _too_deep(text, limit):
        raise ApiError("VALIDATION_ERROR", f"JSON may nest at most {limit} levels deep.")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError as exc:  # a JSON_MAX_DEPTH set above what the interpreter allows
        raise ApiError("VALIDATION_ERROR", f"JSON may nest at most {limit} levels deep.") from exc
