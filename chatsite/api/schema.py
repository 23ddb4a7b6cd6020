"""OpenAPI: the error envelope as one component, error responses built from the ERRORS registry,
and the paths drf-spectacular cannot see (plain Django views such as /dm/sse and the probes).

Views declare the errors their services raise by code, `error_responses("NOT_FOUND", ...)`; the
HTTP status of each comes from the registry. `postprocess_schema` (a drf-spectacular
POSTPROCESSING_HOOK) then adds what every operation of a kind can answer:

- an operation with a request body: 400 BAD_REQUEST (malformed JSON) and VALIDATION_ERROR (also
  too deeply nested), 413 PAYLOAD_TOO_LARGE, 415 UNSUPPORTED_MEDIA_TYPE;
- an operation that requires the bearer token: 401 UNAUTHENTICATED.

Each error response is the `ApiError` component narrowed to the codes that status can carry at
that operation, so a client (and tests/openapi.py, which checks every test response against this
schema) knows which codes to expect.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.utils import OpenApiResponse

from chatsite.api.errors import ERRORS

ERROR_COMPONENT = "ApiError"
_ERROR_REF = f"#/components/schemas/{ERROR_COMPONENT}"

BODY_ERRORS = ("BAD_REQUEST", "VALIDATION_ERROR", "PAYLOAD_TOO_LARGE", "UNSUPPORTED_MEDIA_TYPE")
AUTH_ERRORS = ("UNAUTHENTICATED",)
DATABASE_ERRORS = ("DATABASE_UNAVAILABLE",)

_UUIDS = {"type": "array", "items": {"type": "string", "format": "uuid"}}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": 'Every error: `{"code", "detail", ...}`; the codes and their statuses are the '
    "registry in chatsite/api/errors.py (docs/errors.md). Some codes add fields, listed here.",
    "properties": {
        "code": {"type": "string", "enum": list(ERRORS)},
        "detail": {"type": "string"},
        "errors": {
            "type": "object",
            "additionalProperties": True,
            "description": "VALIDATION_ERROR: messages per field (nested objects and lists for "
            "nested fields; `non_field_errors` for the body as a whole).",
        },
        "retry_in_seconds": {
            "type": "integer",
            "minimum": 1,
            "description": "RATE_LIMITED: when to retry (also in the X-Retry-After header); "
            "DATABASE_UNAVAILABLE: the same as its Retry-After header.",
        },
        "feature": {
            "type": "string",
            "description": "FEATURE_DISABLED / MESSAGE_WRITE_DISABLED: the feature that is off.",
        },
        "field": {"type": "string", "description": "INVALID_SIGNATURE: the field that did not verify."},
        "missing_devices": {**_UUIDS, "description": "DEVICE_MISMATCH: active devices with no envelope."},
        "extra_devices": {**_UUIDS, "description": "DEVICE_MISMATCH: envelopes for unknown devices."},
        "revoked_devices": {**_UUIDS, "description": "DEVICE_MISMATCH: envelopes for revoked devices."},
        "exhausted_devices": {
            **_UUIDS,
            "description": "PREKEYS_EXHAUSTED: devices with neither a one-time prekey nor a fallback key.",
        },
    },
    "required": ["code", "detail"],
    "additionalProperties": True,
}

_RETRY_HEADERS = {
    "X-Retry-After": {
        "required": True,
        "description": "Seconds until a retry may succeed.",
        "schema": {"type": "integer"},
    },
    "Retry-After": {"description": "The same, as the standard header.", "schema": {"type": "integer"}},
}


def _ordered(codes: Iterable[str]) -> list[str]:
    order = list(ERRORS)
    return sorted(set(codes), key=order.index)


def _error_schema(codes: Iterable[str]) -> dict[str, Any]:
    return {
        "allOf": [
            {"$ref": _ERROR_REF},
            {"type": "object", "properties": {"code": {"type": "string", "enum": _ordered(codes)}}},
        ]
    }


def _error_description(codes: Iterable[str]) -> str:
    return "; ".join(f"`{code}`: {ERRORS[code].detail}" for code in _ordered(codes))


def _by_status(codes: Iterable[str]) -> dict[int, list[str]]:
    grouped: dict[int, list[str]] = {}
    for code in codes:
        if code not in ERRORS:
            raise ValueError(f"unregistered error code {code!r}")
        grouped.setdefault(ERRORS[code].status, []).append(code)
    return grouped


def error_responses(*codes: str) -> dict[int, OpenApiResponse]:
    """`responses={200: X, **error_responses("NOT_FOUND", "CONFLICT")}` for `extend_schema`: one
    response per status, each the ApiError envelope limited to those codes."""
    return {
        status: OpenApiResponse(response=_error_schema(grouped), description=_error_description(grouped))
        for status, grouped in _by_status(codes).items()
    }


def _error_response(status: int, codes: Iterable[str]) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _error_description(codes),
        "content": {"application/json": {"schema": _error_schema(codes)}},
    }
    if status == ERRORS["RATE_LIMITED"].status:
        response["headers"] = dict(_RETRY_HEADERS)
    elif "DATABASE_UNAVAILABLE" in codes:
        response["headers"] = {
            "Retry-After": {
                "description": "DATABASE_UNAVAILABLE: seconds until the breaker lets a trial through.",
                "schema": {"type": "integer"},
            }
        }
    return response


def error_codes_of(response: dict[str, Any]) -> list[str] | None:
    """The codes an error response built here carries, or None for any other response."""
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    parts = schema.get("allOf") or []
    if len(parts) == 2 and parts[0].get("$ref") == _ERROR_REF:
        return list(parts[1]["properties"]["code"]["enum"])
    return None


# --- Plain Django views --------------------------------------------------------------------

V = TypeVar("V", bound=Callable[..., Any])


def plain_view_schema(
    *,
    method: str = "get",
    operation_id: str,
    tags: list[str],
    description: str,
    responses: dict[int, dict[str, Any]],
    errors: Iterable[str] = (),
    parameters: Iterable[dict[str, Any]] = (),
    security: list[dict[str, list]] | None = None,
) -> Callable[[V], V]:
    """Describe a plain Django view, which drf-spectacular does not see (it lists only DRF views):
    the operation is kept on the view and added to the schema by `postprocess_schema`.
    `responses` are OpenAPI response objects by status; `errors` registry codes."""
    responses_by_status = {str(status): response for status, response in responses.items()}
    for status, grouped in _by_status(errors).items():
        responses_by_status[str(status)] = _error_response(status, grouped)
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "tags": tags,
        "description": description,
        "responses": responses_by_status,
        "security": security if security is not None else [{}],
    }
    if parameters:
        operation["parameters"] = list(parameters)

    def decorate(view: V) -> V:
        operations = dict(getattr(view, "openapi_operations", {}))
        operations[method.lower()] = operation
        view.openapi_operations = operations  # type: ignore[attr-defined]
        return view

    return decorate


def json_content(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """An OpenAPI response object with a JSON body."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_CONVERTER = re.compile(r"<(?:[^>:]+:)?([^>]+)>")


def _plain_views(patterns: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _plain_views(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            operations = getattr(pattern.callback, "openapi_operations", None)
            if operations:
                yield "/" + _CONVERTER.sub(r"{\1}", prefix + str(pattern.pattern)), operations


# --- The hook ------------------------------------------------------------------------------

STREAM_TICKET_SCHEME = {
    "type": "apiKey",
    "in": "query",
    "name": "ticket",
    "description": "A single-use ticket from POST /auth/stream-ticket, for browsers that cannot "
    "send the Authorization header (EventSource). Only /dm/sse (and /ws) accept it.",
}


def postprocess_schema(result: dict[str, Any], generator: Any, request: Any, public: bool, **kwargs) -> dict:
    """drf-spectacular POSTPROCESSING_HOOK: the ApiError component, the errors every operation of
    a kind can answer, and the plain views' operations."""
    components = result.setdefault("components", {})
    components.setdefault("schemas", {})[ERROR_COMPONENT] = ERROR_SCHEMA
    components.setdefault("securitySchemes", {})["streamTicket"] = STREAM_TICKET_SCHEME

    paths = result.setdefault("paths", {})
    for path, operations in _plain_views(get_resolver(getattr(generator, "urlconf", None)).url_patterns):
        for method, operation in operations.items():
            paths.setdefault(path, {})[method] = copy.deepcopy(operation)  # the view keeps its own
    result["paths"] = dict(sorted(paths.items()))

    for operations in paths.values():
        for operation in operations.values():
            _add_common_errors(operation)
    return result


def _add_common_errors(operation: dict[str, Any]) -> None:
    extra: list[str] = []
    if "requestBody" in operation:
        extra += BODY_ERRORS
    security = operation.get("security")
    if security and {} not in security:
        extra += AUTH_ERRORS
    responses = operation["responses"]
    if "503" not in responses or error_codes_of(responses["503"]) is not None:
        # The database circuit breaker (chatsite/api/circuit.py) can answer any API operation;
        # the probes, which keep their own 503 body, are answered before it.
        extra += DATABASE_ERRORS
    codes: dict[int, list[str]] = {}
    for status, response in responses.items():
        declared = error_codes_of(response)
        if declared is not None:
            codes[int(status)] = declared
    for status, grouped in _by_status(extra).items():
        codes.setdefault(status, []).extend(grouped)
    for status, grouped in codes.items():
        if str(status) in responses and error_codes_of(responses[str(status)]) is None:
            raise ValueError(f"{operation['operationId']}: {status} is both a success and an error response")
        responses[str(status)] = _error_response(status, grouped)
    operation["responses"] = dict(sorted(responses.items()))
