"""Bundle claims: one key bundle per active device of a user, each with one claimed one-time prekey.

The claim is one SQL statement on PostgreSQL; the comments on _CLAIM_SQL_POSTGRES and
_ACTIVE_DEVICES_SQL_POSTGRES say which locks keep a key from being handed out twice.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from chatsite.accounts.models import Session, User
from chatsite.accounts.selectors import is_blocked
from chatsite.api import throttling
from chatsite.api.errors import ApiError
from chatsite.realtime.relay import publish_to_device
from dm.keys import signed_prekey_stale_before
from dm.models import Device, KeyBundle, OneTimePrekey

logger = logging.getLogger("chatsite.dm")


# PostgreSQL: one statement claims the oldest unclaimed key and counts it.
# - `FOR UPDATE SKIP LOCKED` in the sub-select row-locks the oldest key no other transaction is
#   claiming; keys locked by concurrent claimers are skipped, not waited for, and a key deleted
#   by a committed claim is never returned. The DELETE then removes exactly that locked row, so
#   a key is handed out by at most one committed transaction: never twice.
# - The UPDATE in the same statement (and transaction) decrements prekeys_remaining only if a
#   row was deleted, so the counter always equals the row count; it row-locks the bundle until
#   commit, which orders concurrent claims on one device.
_CLAIM_SQL_POSTGRES = """
WITH claimed AS (
    DELETE FROM e2ee_one_time_prekeys
    WHERE id = (
        SELECT id FROM e2ee_one_time_prekeys
        WHERE device_id = %(device_id)s
        ORDER BY id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    )
    RETURNING key_id, public_key
), counted AS (
    UPDATE e2ee_key_bundles
    SET prekeys_remaining = prekeys_remaining - 1, updated_at = %(now)s
    WHERE device_id = %(device_id)s AND EXISTS (SELECT 1 FROM claimed)
    RETURNING prekeys_remaining
)
SELECT claimed.key_id, claimed.public_key, counted.prekeys_remaining FROM claimed, counted
"""

# Target devices are read FOR SHARE: claims run in parallel, but a revoke (FOR NO KEY UPDATE on the
# same row) waits for them, and a claim that starts after a revoke no longer sees the device.
_ACTIVE_DEVICES_SQL_POSTGRES = """
SELECT device_id FROM e2ee_devices
WHERE user_id = %s AND status = 'active'
ORDER BY created_at, device_id
FOR SHARE
"""


def _claim_one_time_key(device_id: Any, now: Any) -> tuple[str, str, int] | None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_CLAIM_SQL_POSTGRES, {"device_id": device_id, "now": now})
            row = cursor.fetchone()
        return (row[0], row[1], row[2]) if row else None
    # Embedded SQLite (dev mode): no row locks or SKIP LOCKED, but SQLite runs one writer at a
    # time. The DELETE's row count says whether this transaction removed the key; if another
    # claimer took it first, try the next one, so a key still goes to one claimer only.
    for _attempt in range(5):
        key = OneTimePrekey.objects.filter(device_id=device_id).order_by("id").first()
        if key is None:
            return None
        if OneTimePrekey.objects.filter(pk=key.pk).delete()[0]:
            KeyBundle.objects.filter(pk=device_id).update(
                prekeys_remaining=F("prekeys_remaining") - 1, updated_at=now
            )
            remaining = KeyBundle.objects.values_list("prekeys_remaining", flat=True).get(pk=device_id)
            return key.key_id, key.public_key, remaining
    return None


def _active_device_ids(user_id: int) -> list:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_ACTIVE_DEVICES_SQL_POSTGRES, [user_id])
            return [row[0] for row in cursor.fetchall()]
    return list(
        Device.objects.filter(user_id=user_id, status=Device.Status.ACTIVE)
        .order_by("created_at", "device_id")
        .values_list("device_id", flat=True)
    )


def bundle_claim(*, requester_session: Session, target_user_id: int) -> dict[str, Any]:
    """One key bundle per active device of the target user, each with one claimed one-time prekey.

    - Oldest uploaded key first; a key is never handed out twice (see _CLAIM_SQL_POSTGRES).
    - An empty pool hands out the device's fallback key with `fallback: true`.
    - A device with neither is listed in `exhausted_devices` and left out of `devices`; only when
      every device is exhausted is it 409 PREKEYS_EXHAUSTED (nothing is claimed then).
    - The requesting device itself is left out of its own user's bundle (no session with itself).
    - Rate limited per (requesting user, target device) pair: one budget shared by every session
      and device of the requester, so a new log-in or a new device does not reset it.
    - A disabled (or inactive) target is 404 NOT_FOUND like an unknown user; nothing is claimed.
    """
    requester_id = requester_session.user_id
    target = User.objects.filter(pk=target_user_id, is_active=True, disabled=False).first()
    if target is None:
        raise ApiError("NOT_FOUND", "No such user.")
    if target.pk != requester_id and is_blocked(sender_id=requester_id, recipient_id=target.pk):
        raise ApiError("BLOCKED")
    # Keyed by the user, never the session or device: those are free to mint (log in again,
    # register another device), so a per-session or per-device key let one user drain a pool.
    # A per-device window at the same limit would never be the binding one, so there is none.
    requester = f"u:{requester_id}"
    stale_before = signed_prekey_stale_before()
    low_watermark = settings.E2EE_OTPK_LOW_WATERMARK

    with transaction.atomic():
        device_ids = [d for d in _active_device_ids(target.pk) if d != requester_session.device_id]
        if device_ids:
            # One atomic check over every pair: either all have room and all are counted, or the
            # fetch is refused and no pair is charged.
            throttling.check_many(
                [
                    throttling.Window(
                        "bundle_fetch",
                        f"{requester}:{device_id}",
                        settings.E2EE_BUNDLE_FETCHES_PER_PAIR_PER_HOUR,
                        3600,
                    )
                    for device_id in device_ids
                ],
                detail="Too many bundle fetches for this device; try again later.",
            )
        devices = {d.pk: d for d in Device.objects.filter(pk__in=device_ids).select_related("bundle")}
        now = timezone.now()
        out: list[dict[str, Any]] = []
        exhausted: list[str] = []
        for device_id in device_ids:
            device = devices[device_id]
            try:
                bundle = device.bundle
            except KeyBundle.DoesNotExist:  # no bundle: nothing to hand out for this device
                exhausted.append(str(device_id))
                continue
            claimed = _claim_one_time_key(device_id, now)
            if claimed is not None:
                key_id, public_key, remaining = claimed
                one_time: dict[str, str] | None = {"key_id": key_id, "public_key": public_key}
                fallback = False
            elif bundle.fallback_key:
                one_time = {"key_id": bundle.fallback_key_id, "public_key": bundle.fallback_key}
                fallback, remaining = True, 0
            else:
                exhausted.append(str(device_id))
                continue
            if remaining <= low_watermark:
                # Deferred to on_commit by the relay: no event for a claim that rolls back.
                publish_to_device(
                    device_id,
                    {"type": "keys.low", "device_id": str(device_id), "prekeys_remaining": remaining},
                    source="dm",
                )
            out.append(
                {
                    "device_id": str(device_id),
                    "identity_key": device.identity_key,
                    "signing_key": device.signing_key,
                    "signed_prekey": {
                        "key_id": bundle.signed_prekey_id,
                        "public_key": bundle.signed_prekey,
                        "signature": bundle.signed_prekey_signature,
                    },
                    "signed_prekey_stale": bundle.signed_prekey_uploaded_at < stale_before,
                    "one_time_prekey": one_time,
                    "fallback": fallback,
                }
            )
        if exhausted and not out:
            raise ApiError(
                "PREKEYS_EXHAUSTED",
                "The user's devices have no one-time prekeys or fallback keys left.",
                exhausted_devices=exhausted,
            )
    if exhausted:
        logger.warning("prekeys exhausted", extra={"target_user_id": target.pk, "devices": exhausted})
    return {"user_id": target.pk, "devices": out, "exhausted_devices": exhausted}
