"""`Authorization: Bearer <token>` for REST; the realtime gateway uses the same lookup."""

from __future__ import annotations

from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from chatsite.accounts.selectors import session_for_token


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
