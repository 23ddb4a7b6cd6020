"""Request ids and access lines: cross-cutting logging for every request and WebSocket.

RequestIdMiddleware works on the sync and the async handler path (under daphne the chain is
async, and a sync-only middleware would cost every request a thread hop); AccessLogMiddleware
wraps the ASGI application in chatsite.asgi.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.signals import request_finished
from django.http import HttpRequest, HttpResponse

from chatsite.api.request import client_ip_from
from chatsite.logs import redact_query_string, request_id_var

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is reused only if it is short and plain: it goes into every log line and header.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")

GetResponse = Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]


def bind_request_id(request: HttpRequest) -> str:
    incoming = request.META.get("HTTP_X_REQUEST_ID", "")
    request_id = incoming if _SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
    request.request_id = request_id
    # Not reset when the middleware returns: Django logs 4xx/5xx responses ("Not Found: /x") after
    # the chain, and those lines need the id most. Async requests run in their own task (their own
    # context); on the sync path request_finished clears it once the response is closed.
    request_id_var.set(request_id)
    return request_id


def _clear_request_id(**kwargs: Any) -> None:
    request_id_var.set(None)


request_finished.connect(_clear_request_id, dispatch_uid="chatsite.request_logs.clear_request_id")


class SyncAndAsyncMiddleware:
    """Django's pattern for a middleware with both a sync and an async path."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)


class RequestIdMiddleware(SyncAndAsyncMiddleware):
    """Give every request an id: in request.request_id, every log line, and the response header."""

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.async_mode:
            return self._acall(request)
        request_id = bind_request_id(request)
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        request_id = bind_request_id(request)
        response = await self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response


access_logger = logging.getLogger("chatsite.access")


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str:
    # Repeated headers are joined as one comma-separated list, the way Django builds request.META.
    return ",".join(value.decode("latin-1") for key, value in headers if key.lower() == name)


class AccessLogMiddleware:
    """ASGI middleware, outermost in chatsite.asgi: the access log, as JSON lines through our
    formatter and redaction (chatsite.server runs daphne with its own access log off).

    One line per HTTP response, when its last byte was sent or the client went away (a
    long-lived SSE response is logged when it ends). For a WebSocket: one line when the handshake
    is answered (101 accepted, 403 refused) and one when it closes, with the close code.
    Query strings are logged with secret values replaced (`?ticket=[redacted]`).
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            return await self._http(scope, receive, send)
        if scope["type"] == "websocket":
            return await self._websocket(scope, receive, send)
        return await self.app(scope, receive, send)

    def _log(self, scope, started: float, outcome: str, **fields: Any) -> None:
        headers = scope.get("headers", [])
        client = scope.get("client") or (None, None)
        method = scope.get("method", "WS") if scope["type"] == "http" else "WS"
        access_logger.info(
            f"{method} {scope.get('path', '')} {outcome}",
            extra={
                "protocol": scope["type"],
                "method": method,
                "path": scope.get("path", ""),
                "query": redact_query_string(scope.get("query_string", b"").decode("latin-1")),
                "client_ip": client_ip_from(_header(headers, b"x-forwarded-for"), client[0]),
                "duration_ms": round((time.monotonic() - started) * 1000, 1),
                **fields,
            },
        )

    async def _http(self, scope, receive, send):
        started = time.monotonic()
        state: dict[str, Any] = {"status": None, "bytes": 0, "request_id": None, "logged": False}

        def log_once() -> None:
            if not state["logged"]:
                state["logged"] = True
                # The request id RequestIdMiddleware chose; Django runs the view in its own task,
                # so it is read off the response rather than from request_id_var.
                status = state["status"]
                self._log(
                    scope,
                    started,
                    "-" if status is None else str(status),
                    status=status,
                    bytes=state["bytes"],
                    request_id=state["request_id"] or None,
                )

        async def logging_send(message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["request_id"] = _header(message.get("headers", []), REQUEST_ID_HEADER.lower().encode())
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body", b""))
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                log_once()

        try:
            return await self.app(scope, receive, logging_send)
        finally:
            log_once()

    async def _websocket(self, scope, receive, send):
        started = time.monotonic()
        # A WebSocket gets its request id here; the consumer runs in this task, so its log lines
        # carry the same id.
        request_id = uuid.uuid4().hex
        reset = request_id_var.set(request_id)
        state: dict[str, Any] = {"accepted": False, "close_code": None}

        async def logging_send(message) -> None:
            if message["type"] == "websocket.accept":
                state["accepted"] = True
                self._log(scope, started, "101", status=101, request_id=request_id)
            elif message["type"] == "websocket.close":
                if not state["accepted"]:
                    self._log(scope, started, "403", status=403, request_id=request_id)
                elif state["close_code"] is None:
                    state["close_code"] = message.get("code", 1000)
            await send(message)

        async def logging_receive():
            message = await receive()
            if message["type"] == "websocket.disconnect" and state["close_code"] is None:
                state["close_code"] = message.get("code")
            return message

        try:
            return await self.app(scope, logging_receive, logging_send)
        finally:
            if state["accepted"]:
                code = state["close_code"]
                self._log(scope, started, f"closed {code}", close_code=code, request_id=request_id)
            request_id_var.reset(reset)
