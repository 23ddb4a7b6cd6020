"""Signals dm sends so the domains above it (groups) can react in the same transaction.

Sent inside the writing transaction: a receiver's writes commit or roll back with it (a group's
epoch moves in the same transaction as the device change, as the groups runbook requires).
"""

from django.dispatch import Signal

# kwargs: user_id, device_id. A device was registered (it is active from this transaction on).
device_added = Signal()
# kwargs: user_id, device_id. A device was revoked.
device_revoked = Signal()
