"""Stream tickets: short-lived, single-use credentials for `?ticket=` on /ws and /dm/sse.

A browser cannot set `Authorization` on a WebSocket or an EventSource, and a bearer token in a URL
ends up in access logs, proxy logs and browser history. So a client exchanges its bearer token for
a ticket (`POST /auth/stream-ticket`) and puts only that in the URL: it is good for one connection
within STREAM_TICKET_TTL_S seconds and opens a stream of the session that asked for it, so revoking
that session closes the stream like any other of its streams.

Tickets live in Redis under the SHA-256 of the ticket (a key listing shows no usable ticket), with
the TTL as the expiry. With REDIS_URL unset (embedded mode: one process) they live in this
process's memory instead.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from chatsite.accounts.models import Session
from chatsite.accounts.tokens import hash_token, new_token
from chatsite.api.errors import ApiError
from chatsite.api.single_use import SingleUseStore

_KEY = "stream_ticket:{}"

# Tickets by the SHA-256 of the ticket; Redis (GETDEL) or, embedded, this process.
_store = SingleUseStore(
    unavailable_detail="Stream tickets are unavailable; retry, or send Authorization: Bearer."
)


def _key(ticket: str) -> str:
    return _KEY.format(hash_token(ticket))


def stream_ticket_issue(*, session: Session) -> tuple[str, datetime]:
    """A new ticket for `session` and when it expires."""
    ticket = new_token()
    ttl = settings.STREAM_TICKET_TTL_S
    _store.put(_key(ticket), str(session.pk), ttl_seconds=ttl)
    return ticket, timezone.now() + timedelta(seconds=ttl)


def stream_ticket_redeem(*, ticket: str) -> Session | None:
    """The live session the ticket was issued to, or None (unknown, used, expired, revoked).

    Single use across every process (SingleUseStore: of two connections racing with one ticket
    exactly one gets the session id). If Redis fails the ticket counts as unknown: the connection
    is unauthenticated and the client asks for a new ticket.
    """
    if not ticket or len(ticket) > 200:
        return None
    try:
        session_id = _store.take(_key(ticket))
    except ApiError:
        return None
    if session_id is None:
        return None
    return (
        Session.objects.select_related("user")
        .filter(
            pk=session_id,
            revoked_at__isnull=True,
            expires_at__gt=timezone.now(),
            user__disabled=False,
            user__is_active=True,
        )
        .first()
    )
