"""Credentials, read in one place: `Authorization: Bearer <token>` for REST, and for live streams
(/ws and /dm/sse) the same header or a single-use `?ticket=`."""

from __future__ import annotations

from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from chatsite.accounts.models import Session
from chatsite.accounts.selectors import session_for_token
from chatsite.accounts.tickets import stream_ticket_redeem


def token_from_header(value: bytes | str) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    parts = value.split()
    if len(parts) == 2 and parts[0].lower() == "bearer":
        return parts[1]
    return None


class BearerTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        header = get_authorization_header(request)
        if not header:
            return None
        token = token_from_header(header)
        if token is None:
            raise AuthenticationFailed("Use 'Authorization: Bearer <token>'.")
        session = session_for_token(token)
        if session is None:
            raise AuthenticationFailed("Invalid, expired or revoked token.")
        return session.user, session

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


def stream_session(*, authorization: str, ticket: str | None) -> Session | None:
    """The live session a stream (/ws, /dm/sse) acts for: from `Authorization: Bearer`, else from a
    single-use stream ticket (browsers cannot set headers on a WebSocket or an EventSource).
    `?token=` is never read: a long-lived credential in a URL ends up in access and proxy logs."""
    token = token_from_header(authorization)
    if token:
        return session_for_token(token)
    if ticket:
        return stream_ticket_redeem(ticket=ticket)
    return None
