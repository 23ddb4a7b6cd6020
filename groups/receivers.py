"""Reactions to lower layers' signals, in the transaction that sent them.

- A member's device added or revoked (dm.signals): every group of that user moves to a new epoch,
  so senders must hand their next sender key to exactly the current device set.
- An account disabled (accounts.signals) or deleted (pre_delete): every group it owns gets a new
  owner in the same transaction (groups.services.members.owner_succession).
"""

from __future__ import annotations

from django.db.models.signals import pre_delete
from django.dispatch import receiver

from chatsite.accounts.models import User
from chatsite.accounts.signals import account_disabled
from dm.signals import device_added, device_revoked
from groups.models import EpochChange
from groups.selectors.members import group_ids_of_user
from groups.services.epochs import Change, increment_group_epoch


@receiver(device_added)
def _device_added(sender, *, user_id: int, device_id, **kwargs) -> None:
    for group_id in group_ids_of_user(user_id):
        increment_group_epoch(
            group_id=group_id, changes=[Change(EpochChange.Kind.DEVICE_ADDED, user_id, device_id)]
        )


@receiver(device_revoked)
def _device_revoked(sender, *, user_id: int, device_id, **kwargs) -> None:
    for group_id in group_ids_of_user(user_id):
        increment_group_epoch(
            group_id=group_id, changes=[Change(EpochChange.Kind.DEVICE_REMOVED, user_id, device_id)]
        )


@receiver(account_disabled)
def _account_disabled(sender, *, user_id: int, **kwargs) -> None:
    from groups.services.members import owner_succession

    owner_succession(user_id=user_id)


@receiver(pre_delete, sender=User)
def _account_deleted(sender, instance: User, **kwargs) -> None:
    from groups.services.members import owner_succession

    owner_succession(user_id=instance.pk, leaving=True)
