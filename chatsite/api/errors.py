"""The one error model: every API error is {"code": ..., "detail": ...} with the runbook's status.

`ERRORS` is the registry (code -> HTTP status -> default detail); docs/errors.md is generated from
it (`python manage.py errors_doc`). Services raise `ApiError(code)`; DRF's exception handler and the
realtime gateway turn it into an HTTP response or a `{"type": "error", ...}` frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response

logger = logging.getLogger("chatsite.api")


@dataclass(frozen=True)
class ErrorSpec:
    status: int
    detail: str
    meaning: str


ERRORS: dict[str, ErrorSpec] = {
    # Seed 000 quick reference
    "GROUP_FULL": ErrorSpec(409, "The group is at its member limit.", "Group at 100 members"),
    "EPOCH_STALE": ErrorSpec(409, "Client epoch is outdated; refetch and resend.", "Client epoch outdated"),
    "BANNED": ErrorSpec(403, "You are banned from this group.", "User banned from group"),
    "NOT_MEMBER": ErrorSpec(403, "You are not a member of this group.", "User not in group"),
    "SENDER_KEY_REQUIRED": ErrorSpec(409, "Distribute a sender key first.", "Missing sender key"),
    "MAX_USES": ErrorSpec(409, "The invite has been used up.", "Invite exhausted"),
    "GONE": ErrorSpec(410, "This has expired.", "Expired invite/post"),
    "RATE_LIMITED": ErrorSpec(429, "Too many requests.", "Too many requests; see X-Retry-After"),
    "OWNER_REQUIRED": ErrorSpec(409, "A group needs an owner; transfer ownership first.", "Owner leaving"),
    # Seed 001 (E2EE DM)
    "PREKEYS_EXHAUSTED": ErrorSpec(409, "The device has no prekeys left.", "OTPK pool and fallback empty"),
    "BUNDLE_STALE": ErrorSpec(409, "The signed prekey is too old; rotate it.", "Signed prekey past max age"),
    "DEVICE_REVOKED": ErrorSpec(409, "This device has been revoked.", "Call made as a revoked device"),
    "DEVICE_MISMATCH": ErrorSpec(
        409, "Envelopes do not match the recipients' active devices.", "Client device list out of date"
    ),
    "DEVICE_REQUIRED": ErrorSpec(409, "Register a device for this session first.", "Session has no device"),
    "DEVICE_LIMIT": ErrorSpec(409, "You have registered the maximum number of devices.", "Device cap"),
    "INVALID_SIGNATURE": ErrorSpec(400, "A signature did not verify.", "Bad Ed25519 signature"),
    "BLOCKED": ErrorSpec(403, "The recipient does not accept messages from you.", "Sender is blocked"),
    "PAYLOAD_TOO_LARGE": ErrorSpec(413, "The message is too large.", "Message over the size limit"),
    # Cross-cutting
    "FEATURE_DISABLED": ErrorSpec(403, "This feature is not enabled.", "Feature flag off"),
    "VALIDATION_ERROR": ErrorSpec(400, "The request is invalid.", "Field errors in `errors`"),
    "BAD_REQUEST": ErrorSpec(400, "The request could not be understood.", "Malformed body"),
    "UNAUTHENTICATED": ErrorSpec(401, "Authentication credentials were not provided or are invalid.", ""),
    "INVALID_CREDENTIALS": ErrorSpec(401, "Wrong username or password.", "Failed log-in"),
    "ACCOUNT_DISABLED": ErrorSpec(403, "This account is disabled.", "users.disabled = true"),
    "PERMISSION_DENIED": ErrorSpec(403, "You may not do this.", "Not allowed"),
    "NOT_FOUND": ErrorSpec(404, "Not found.", "Unknown route or object"),
    "METHOD_NOT_ALLOWED": ErrorSpec(405, "Method not allowed.", ""),
    "NOT_ACCEPTABLE": ErrorSpec(406, "Cannot satisfy the Accept header.", ""),
    "CONFLICT": ErrorSpec(409, "The request conflicts with the current state.", "e.g. username taken"),
    "UNSUPPORTED_MEDIA_TYPE": ErrorSpec(415, "Send application/json.", ""),
    "SERVICE_UNAVAILABLE": ErrorSpec(503, "A dependency is unavailable; retry shortly.", ""),
    # Seed 004 "Cascading Failures" / "Data Corruption" (chatsite/api/circuit.py, chatsite/api/flags.py)
    "DATABASE_UNAVAILABLE": ErrorSpec(
        503, "The database is unavailable; retry after Retry-After seconds.", "Database circuit breaker open"
    ),
    "MESSAGE_WRITE_DISABLED": ErrorSpec(
        503, "Message writes are paused; reading still works.", "MESSAGE_WRITE off (data-corruption runbook)"
    ),
    "INTERNAL_ERROR": ErrorSpec(500, "Internal server error.", "A bug: see logs by request id"),
}


class ApiError(Exception):
    """Raised by services; carries a registered code and optional extra body fields."""

    def __init__(self, code: str, detail: str | None = None, *, headers: dict | None = None, **extra: Any):
        if code not in ERRORS:
            raise ValueError(f"unregistered error code {code!r}")
        self.code = code
        self.status = ERRORS[code].status
        self.detail = detail or ERRORS[code].detail
        self.extra = extra
        self.headers = headers or {}
        super().__init__(f"{code}: {self.detail}")

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "detail": self.detail, **self.extra}

    def frame(self, **ref: Any) -> dict[str, Any]:
        """The same error as a WebSocket frame."""
        return {"type": "error", **self.body(), **ref}


def rate_limited(retry_in_seconds: float, detail: str | None = None) -> ApiError:
    retry = max(1, int(retry_in_seconds + 0.999))
    return ApiError(
        "RATE_LIMITED",
        detail,
        headers={"X-Retry-After": str(retry), "Retry-After": str(retry)},
        retry_in_seconds=retry,
    )


_DRF_CODES = {
    drf_exceptions.NotAuthenticated: "UNAUTHENTICATED",
    drf_exceptions.AuthenticationFailed: "UNAUTHENTICATED",
    drf_exceptions.PermissionDenied: "PERMISSION_DENIED",
    drf_exceptions.NotFound: "NOT_FOUND",
    drf_exceptions.MethodNotAllowed: "METHOD_NOT_ALLOWED",
    drf_exceptions.NotAcceptable: "NOT_ACCEPTABLE",
    drf_exceptions.UnsupportedMediaType: "UNSUPPORTED_MEDIA_TYPE",
    drf_exceptions.ParseError: "BAD_REQUEST",
}


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every error leaves as {"code", "detail", ...}."""
    from chatsite.api.circuit import database_failure  # imported here: circuit imports this module

    if (outage := database_failure(exc)) is not None:
        return Response(outage.body(), status=outage.status, headers=outage.headers)
    if isinstance(exc, ApiError):
        return Response(exc.body(), status=exc.status, headers=exc.headers)
    if isinstance(exc, RequestDataTooBig):
        err = ApiError("PAYLOAD_TOO_LARGE", "The request body is too large.")
        return Response(err.body(), status=err.status)
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    if isinstance(exc, drf_exceptions.Throttled):
        err = rate_limited(exc.wait or 1)
        return Response(err.body(), status=err.status, headers=err.headers)
    if isinstance(exc, drf_exceptions.ValidationError):
        return Response(
            {"code": "VALIDATION_ERROR", "detail": ERRORS["VALIDATION_ERROR"].detail, "errors": exc.detail},
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, drf_exceptions.APIException):
        code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), None)
        if code is None:
            code = "INTERNAL_ERROR" if exc.status_code >= 500 else "BAD_REQUEST"
        headers = {}
        if isinstance(exc, drf_exceptions.NotAuthenticated | drf_exceptions.AuthenticationFailed):
            headers["WWW-Authenticate"] = 'Bearer realm="api"'
        detail = str(exc.detail) if isinstance(exc.detail, str) else ERRORS[code].detail
        return Response({"code": code, "detail": detail}, status=exc.status_code, headers=headers)
    # A bug, not a client mistake: log it with the request id and still answer in the envelope
    # (never an HTML page or a stack trace, even with DEBUG on).
    logger.exception("unhandled error in API view", exc_info=exc)
    return Response(ERRORS_BODY_500, status=500)


ERRORS_BODY_500 = {"code": "INTERNAL_ERROR", "detail": ERRORS["INTERNAL_ERROR"].detail}


def error_response(err: ApiError) -> JsonResponse:
    """The envelope of an ApiError, with its headers (X-Retry-After on a 429), for plain Django
    views (DRF views get the same through the exception handler)."""
    resp = JsonResponse(err.body(), status=err.status)
    for k, v in err.headers.items():
        resp[k] = v
    return resp


def json_error(code: str, detail: str | None = None, **extra: Any) -> JsonResponse:
    return error_response(ApiError(code, detail, **extra))


def handler404(request, exception=None):
    return json_error("NOT_FOUND", f"No route for {request.method} {request.path}.")


def handler500(request):
    return json_error("INTERNAL_ERROR")


def handler400(request, exception=None):
    return json_error("BAD_REQUEST")


def handler403(request, exception=None):
    return json_error("PERMISSION_DENIED")


def csrf_failure(request, reason: str = ""):
    """CSRF_FAILURE_VIEW. Only the admin's cookie-session forms use CSRF (DRF views and the 404
    route are exempt), and it keeps Django's page; anything else still gets the envelope."""
    if request.path.startswith("/admin/"):
        from django.views.csrf import csrf_failure as django_csrf_failure

        return django_csrf_failure(request, reason)
    return json_error("PERMISSION_DENIED", "CSRF verification failed.")
