"""Reactions to accounts' signals: revoked sessions lose their live streams (ForceDisconnect)."""

from django.dispatch import receiver

from chatsite.accounts.signals import sessions_revoked
from chatsite.realtime import relay
from chatsite.realtime.close_codes import CloseCode


@receiver(sessions_revoked)
def close_revoked_session_streams(sender, *, user_id, session_ids, reason, **kwargs):
    if session_ids:
        relay.close_streams(session_ids=session_ids, code=CloseCode.UNAUTHENTICATED, reason=reason)
