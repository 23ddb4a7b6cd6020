"""Signals accounts sends so the realtime gateway (which sits above accounts) can react.

Both are sent only after the transaction commits.
"""

from django.dispatch import Signal

# kwargs: user_id, session_ids (list of str), reason
sessions_revoked = Signal()
