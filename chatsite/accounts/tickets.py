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

import threading
import time
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.utils import timezone

from chatsite.accounts.models import Session
from chatsite.accounts.tokens import hash_token, new_token
from chatsite.api.errors import ApiError
from chatsite.api.redis import get_redis

_KEY = "stream_ticket:{}"

# Embedded mode only: key -> (session id, monotonic expiry).
_local: dict[str, tuple[str, float]] = {}
_local_lock = threading.Lock()


def _key(ticket: str) -> str:
    return _KEY.format(hash_token(ticket))


def stream_ticket_issue(*, session: Session) -> tuple[str, datetime]:
    """A new ticket for `session` and when it expires."""
    ticket = new_token()
    ttl = settings.STREAM_TICKET_TTL_S
    expires_at = timezone.now() + timedelta(seconds=ttl)
    client = get_redis()
    if client is None:
        now = time.monotonic()
        with _local_lock:
            for key in [k for k, (_, expiry) in _local.items() if expiry <= now]:
                del _local[key]
            _local[_key(ticket)] = (str(session.pk), now + ttl)
        return ticket, expires_at
    try:
        client.set(_key(ticket), str(session.pk), ex=ttl)
    except redis.RedisError as exc:
        # Another process may serve the stream, so a ticket only this process knew would not work.
        raise ApiError(
            "SERVICE_UNAVAILABLE", "Stream tickets are unavailable; retry, or send Authorization: Bearer."
        ) from exc
    return ticket, expires_at


def stream_ticket_redeem(*, ticket: str) -> Session | None:
    """The live session the ticket was issued to, or None (unknown, used, expired, revoked).

    Single use across every process: Redis GETDEL reads and deletes the key in one command, so of
    two connections racing with one ticket exactly one gets the session id.
    """
    if not ticket or len(ticket) > 200:
        return None
    client = get_redis()
    if client is None:
        with _local_lock:
            session_id, expiry = _local.pop(_key(ticket), (None, 0.0))
        if expiry <= time.monotonic():
            return None
    else:
        try:
            raw = client.getdel(_key(ticket))
        except redis.RedisError:
            return None  # answered as unauthenticated; the client asks for a new ticket
        if raw is None:
            return None
        session_id = raw.decode()
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
