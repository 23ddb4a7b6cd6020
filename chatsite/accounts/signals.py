"""Signals accounts sends so the layers above it (the realtime gateway, the domains) can react.

`sessions_revoked` is sent only after the transaction commits; `account_disabled` inside it, so
a receiver's writes (a group's owner succession) commit or roll back with the account change.
"""

from django.dispatch import Signal

# kwargs: user_id, session_ids (list of str), reason
sessions_revoked = Signal()

# kwargs: user_id. Sent inside the transaction that disables the account.
account_disabled = Signal()
