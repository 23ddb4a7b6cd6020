"""ASGI middleware for /ws: origin check, authentication (bearer header or stream ticket) and the
client address."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from channels.db import database_sync_to_async
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import validate_host

from chatsite.accounts.authentication import stream_session
from chatsite.api.request import client_ip_from
from chatsite.metrics import WS_CONNECTION_REJECTED


def _header(scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return ""


def _forwarded_for(scope) -> str:
    # Every X-Forwarded-For header, in order, as one list (as Django joins them for REST): a
    # proxy may add its own header rather than append to the client's.
    return ",".join(
        value.decode("latin-1") for key, value in scope.get("headers", []) if key == b"x-forwarded-for"
    )


def origin_allowed(origin: str) -> bool:
    """Native clients send no Origin and are accepted; a browser's must be an allowed one."""
    if not origin:
        return True
    if origin in settings.WS_ALLOWED_ORIGINS or "*" in settings.WS_ALLOWED_ORIGINS:
        return True
    host = urlparse(origin).hostname
    return bool(host) and validate_host(host, settings.ALLOWED_HOSTS)


class OriginCheckMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(_header(scope, b"origin")):
            WS_CONNECTION_REJECTED.labels(reason="origin").inc()
            return await WebsocketDenier()(scope, receive, send)
        return await self.app(scope, receive, send)


class TokenAuthMiddleware:
    """Puts the live session (or None) in scope["auth_session"], from `Authorization: Bearer` or
    a single-use `ticket` query parameter (browsers cannot set headers on a WebSocket)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}
        authorization = _header(scope, b"authorization")
        ticket = query.pop("ticket", None)
        session = None
        if authorization or ticket:
            session = await database_sync_to_async(stream_session)(authorization=authorization, ticket=ticket)
        client = scope.get("client") or (None, None)
        scope = {
            **scope,
            "auth_session": session,
            "user": session.user if session else None,
            "query_params": query,
            "client_ip": client_ip_from(_forwarded_for(scope), client[0]),
            "user_agent": _header(scope, b"user-agent"),
        }
        return await self.app(scope, receive, send)
