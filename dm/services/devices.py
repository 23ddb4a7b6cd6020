"""Writes for E2EE devices and their keys: register, upload prekeys, rotate, revoke, claim bundles.

The server stores public keys only. Keys and signatures travel as standard base64 (vodozemac's
`to_base64()` prints it unpadded; padded input is accepted too) and are stored unpadded. A
signature is Ed25519 by the device's signing key over the raw 32 bytes of the Curve25519 key it
signs. Key material is never logged nor copied into security events.
"""

from __future__ import annotations

import base64
import binascii
import logging
from datetime import timedelta
from typing import Any, TypedDict

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from chatsite.accounts.models import SecurityEvent, Session, User
from chatsite.accounts.selectors import is_blocked
from chatsite.accounts.services import session_bind_device, sessions_revoke_for_device
from chatsite.api import throttling
from chatsite.api.errors import ApiError
from chatsite.realtime.relay import close_streams, publish_to_device
from dm.models import Delivery, Device, DeviceQueue, KeyBundle, OneTimePrekey

logger = logging.getLogger("chatsite.dm")
security_log = logging.getLogger("chatsite.security")

KEY_BYTES = 32
SIGNATURE_BYTES = 64
REVOKED_CLOSE_CODE = 4403


class OneTimeKeyIn(TypedDict):
    key_id: str
    public_key: str


class SignedKeyIn(TypedDict):
    key_id: str
    public_key: str
    signature: str


# --- Key encoding and signatures --------------------------------------------------------------


def b64_decode_exact(value: object, *, size: int) -> bytes:
    """Raw bytes of a standard-base64 string (padded or not) that must decode to `size` bytes.

    Only the canonical encoding is accepted (no stray bits in the last character, no URL-safe
    alphabet, no whitespace), so one key has exactly one stored spelling.
    """
    if not isinstance(value, str):
        raise ValueError("Must be a base64 string.")
    unpadded = value.rstrip("=")
    try:
        raw = base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("Must be standard base64 (A-Z, a-z, 0-9, +, /).") from exc
    if len(raw) != size:
        raise ValueError(f"Must encode exactly {size} bytes (got {len(raw)}).")
    if b64_encode(raw) != unpadded or len(value) - len(unpadded) not in (0, (-len(unpadded)) % 4):
        raise ValueError("Must be canonical base64.")
    return raw


def b64_encode(raw: bytes) -> str:
    """Unpadded standard base64, as vodozemac prints keys."""
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def _normalise(value: object, size: int, errors: dict, path: tuple) -> str:
    """Decode `value` or record a field error under `path`; returns the unpadded spelling."""
    try:
        return b64_encode(b64_decode_exact(value, size=size))
    except ValueError as exc:
        node = errors
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = [str(exc)]
        return ""


def _key_id(value: object, errors: dict, path: tuple) -> str:
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if not text or len(text) > 64 or any(ch.isspace() for ch in text):
        node = errors
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = ["Must be a non-empty key id of at most 64 characters without spaces."]
    return text


def _clean_signed(key: SignedKeyIn | dict, field: str, errors: dict) -> dict[str, str]:
    if not isinstance(key, dict):
        errors[field] = ["Must be an object with key_id, public_key and signature."]
        return {}
    return {
        "key_id": _key_id(key.get("key_id"), errors, (field, "key_id")),
        "public_key": _normalise(key.get("public_key"), KEY_BYTES, errors, (field, "public_key")),
        "signature": _normalise(key.get("signature"), SIGNATURE_BYTES, errors, (field, "signature")),
    }


def _clean_one_time(keys: list, errors: dict, field: str = "one_time_prekeys") -> list[dict[str, str]]:
    if not isinstance(keys, list):
        errors[field] = ["Must be a list of {key_id, public_key} objects."]
        return []
    cap = settings.E2EE_MAX_PREKEYS_PER_UPLOAD
    if len(keys) > cap:
        errors[field] = [f"At most {cap} one-time prekeys per upload (E2EE_MAX_PREKEYS_PER_UPLOAD)."]
        return []
    item_errors: dict[int, Any] = {}
    cleaned = []
    for i, key in enumerate(keys):
        if not isinstance(key, dict):
            item_errors[i] = ["Must be an object with key_id and public_key."]
            continue
        cleaned.append(
            {
                "key_id": _key_id(key.get("key_id"), item_errors, (i, "key_id")),
                "public_key": _normalise(key.get("public_key"), KEY_BYTES, item_errors, (i, "public_key")),
            }
        )
    ids = [k["key_id"] for k in cleaned]
    if not item_errors and len(set(ids)) != len(ids):
        errors[field] = ["Key ids must be unique within an upload."]
    elif item_errors:
        errors[field] = item_errors
    return cleaned


def _verify(signing_key_raw: bytes, key: dict[str, str], field: str) -> None:
    """Ed25519 over the raw 32 bytes of the Curve25519 key (vodozemac's `Account.sign(raw)`)."""
    try:
        Ed25519PublicKey.from_public_bytes(signing_key_raw).verify(
            b64_decode_exact(key["signature"], size=SIGNATURE_BYTES),
            b64_decode_exact(key["public_key"], size=KEY_BYTES),
        )
    except (InvalidSignature, ValueError) as exc:
        raise ApiError(
            "INVALID_SIGNATURE", f"The {field} signature does not verify with the signing key.", field=field
        ) from exc


def _signing_key_raw(device: Device) -> bytes:
    return b64_decode_exact(device.signing_key, size=KEY_BYTES)


def _raise_if(errors: dict) -> None:
    if errors:
        raise ValidationError(errors)


def _stale_before() -> Any:
    return timezone.now() - timedelta(days=settings.E2EE_SIGNED_PREKEY_MAX_AGE_DAYS)


def _lock_active_device(device: Device) -> Device:
    """Re-read the device under FOR NO KEY UPDATE: revocation takes the same lock, so an upload or
    a rotation either commits before the revoke (whose deletes then remove it) or sees `revoked`.
    (NO KEY: foreign-key checks of rows inserted for the device, e.g. deliveries, are not blocked.)"""
    locked = Device.objects.select_for_update(no_key=True).filter(pk=device.pk).first()
    if locked is None:
        raise ApiError("NOT_FOUND", "No such device.")
    if locked.status != Device.Status.ACTIVE:
        raise ApiError("DEVICE_REVOKED")
    return locked


# --- Registration ---------------------------------------------------------------------------


def _record_identity_change(*, user: User, device: Device) -> None:
    """A new identity key for a user who has (or had) a device with another one is an identity
    change: contacts see a new key. More than E2EE_IDENTITY_CHANGES_FLAG_PER_DAY in 24 hours is
    flagged for review. Runs under the user row lock taken by device_register, so the count is exact."""
    previous = (
        Device.objects.filter(user=user)
        .exclude(pk=device.pk)
        .exclude(identity_key=device.identity_key)
        .exists()
    )
    if not previous:
        return
    since = timezone.now() - timedelta(hours=24)
    recent = (
        SecurityEvent.objects.filter(
            user=user, kind=SecurityEvent.Kind.IDENTITY_KEY_CHANGED, created_at__gte=since
        ).count()
        + 1
    )
    flagged = recent > settings.E2EE_IDENTITY_CHANGES_FLAG_PER_DAY
    SecurityEvent.objects.create(
        kind=SecurityEvent.Kind.IDENTITY_KEY_CHANGED,
        user=user,
        flagged=flagged,
        data={"device_id": str(device.pk), "device_name": device.device_name, "changes_24h": recent},
    )
    extra = {
        "event": "identity_key_changed",
        "user_id": user.pk,
        "device_id": str(device.pk),
        "changes_24h": recent,
    }
    if flagged:
        security_log.warning("security event: identity key changes over the daily threshold", extra=extra)
    else:
        security_log.info("security event: identity key changed", extra=extra)


def device_register(
    *,
    session: Session,
    name: str,
    identity_key: str,
    signing_key: str,
    signed_prekey: SignedKeyIn,
    one_time_prekeys: list[OneTimeKeyIn],
    fallback_key: SignedKeyIn | None = None,
) -> Device:
    """Register a device for the session's user and bind the session to it."""
    errors: dict[str, Any] = {}
    name = (name or "").strip() if isinstance(name, str) else ""
    if not name or len(name) > 64:
        errors["device_name"] = ["Must be 1 to 64 characters."]
    identity_key = _normalise(identity_key, KEY_BYTES, errors, ("identity_key",))
    signing_key = _normalise(signing_key, KEY_BYTES, errors, ("signing_key",))
    spk = _clean_signed(signed_prekey, "signed_prekey", errors)
    fbk = _clean_signed(fallback_key, "fallback_key", errors) if fallback_key is not None else None
    otpks = _clean_one_time(one_time_prekeys, errors)
    _raise_if(errors)

    signing_raw = b64_decode_exact(signing_key, size=KEY_BYTES)
    _verify(signing_raw, spk, "signed_prekey")
    if fbk is not None:
        _verify(signing_raw, fbk, "fallback_key")

    with transaction.atomic():
        # The user row lock serialises one user's registrations: the device cap and the
        # identity-change count cannot be raced past by parallel requests.
        user = User.objects.select_for_update(no_key=True).get(pk=session.user_id)
        # The session row lock makes "a session is bound to at most one device" hold under races.
        bound = (
            Session.objects.select_for_update(no_key=True)
            .values_list("device_id", flat=True)
            .get(pk=session.pk)
        )
        if bound and Device.objects.filter(pk=bound, status=Device.Status.ACTIVE).exists():
            raise ApiError("CONFLICT", "This session already has a device.")
        active = Device.objects.filter(user=user, status=Device.Status.ACTIVE).count()
        if active >= settings.E2EE_MAX_DEVICES_PER_USER:
            raise ApiError(
                "DEVICE_LIMIT",
                f"You have {active} active devices, the maximum (E2EE_MAX_DEVICES_PER_USER); revoke one.",
            )
        now = timezone.now()
        device = Device.objects.create(
            user=user,
            device_name=name,
            identity_key=identity_key,
            signing_key=signing_key,
            created_at=now,
            last_seen_at=now,
        )
        KeyBundle.objects.create(
            device=device,
            signed_prekey_id=spk["key_id"],
            signed_prekey=spk["public_key"],
            signed_prekey_signature=spk["signature"],
            signed_prekey_uploaded_at=now,
            fallback_key_id=fbk["key_id"] if fbk else "",
            fallback_key=fbk["public_key"] if fbk else "",
            fallback_key_signature=fbk["signature"] if fbk else "",
            prekeys_remaining=len(otpks),
            updated_at=now,
        )
        # bulk_create inserts in list order, so ids (the claim order) follow upload order.
        OneTimePrekey.objects.bulk_create(
            [
                OneTimePrekey(device=device, key_id=k["key_id"], public_key=k["public_key"], uploaded_at=now)
                for k in otpks
            ]
        )
        DeviceQueue.objects.create(device=device, last_seq=0)
        session_bind_device(session=session, device_id=device.pk)
        _record_identity_change(user=user, device=device)
    logger.info(
        "device registered", extra={"user_id": user.pk, "device_id": str(device.pk), "uploaded": len(otpks)}
    )
    return device


# --- Key maintenance ------------------------------------------------------------------------


def prekeys_upload(
    *, device: Device, one_time_prekeys: list[OneTimeKeyIn], fallback_key: SignedKeyIn | None = None
) -> int:
    """Append one-time prekeys (and optionally replace the fallback key); returns the new count.

    The caller resolves `device` among its own devices (someone else's is 404 before this).
    """
    errors: dict[str, Any] = {}
    otpks = _clean_one_time(one_time_prekeys, errors)
    fbk = _clean_signed(fallback_key, "fallback_key", errors) if fallback_key is not None else None
    if not otpks and fbk is None and "one_time_prekeys" not in errors:
        errors["one_time_prekeys"] = ["Upload at least one one-time prekey or a fallback key."]
    _raise_if(errors)

    with transaction.atomic():
        device = _lock_active_device(device)
        if fbk is not None:
            _verify(_signing_key_raw(device), fbk, "fallback_key")
        now = timezone.now()
        cap = settings.E2EE_MAX_PREKEYS_PER_DEVICE
        # The conditional UPDATE both checks the per-device cap and counts the new keys: it takes
        # the bundle row lock and re-evaluates its WHERE after any concurrent claim or upload
        # commits, so the cap holds and prekeys_remaining stays equal to the row count.
        changes: dict[str, Any] = {
            "prekeys_remaining": F("prekeys_remaining") + len(otpks),
            "updated_at": now,
        }
        if fbk is not None:
            changes.update(
                fallback_key_id=fbk["key_id"],
                fallback_key=fbk["public_key"],
                fallback_key_signature=fbk["signature"],
            )
        updated = KeyBundle.objects.filter(pk=device.pk, prekeys_remaining__lte=cap - len(otpks)).update(
            **changes
        )
        if not updated:
            remaining = (
                KeyBundle.objects.filter(pk=device.pk).values_list("prekeys_remaining", flat=True).first()
            )
            raise ValidationError(
                {
                    "one_time_prekeys": [
                        f"A device may store at most {cap} one-time prekeys "
                        f"(E2EE_MAX_PREKEYS_PER_DEVICE); it has {remaining or 0}."
                    ]
                }
            )
        try:
            # uq_e2ee_otpk_device_key rejects a key id the device still has unclaimed.
            with transaction.atomic():
                OneTimePrekey.objects.bulk_create(
                    [
                        OneTimePrekey(
                            device=device, key_id=k["key_id"], public_key=k["public_key"], uploaded_at=now
                        )
                        for k in otpks
                    ]
                )
        except IntegrityError as exc:
            raise ApiError("CONFLICT", "A one-time prekey with that key_id is already uploaded.") from exc
        Device.objects.filter(pk=device.pk).update(last_seen_at=now)
        remaining = KeyBundle.objects.values_list("prekeys_remaining", flat=True).get(pk=device.pk)
    return remaining


def signed_prekey_rotate(*, device: Device, key_id: str, public_key: str, signature: str) -> KeyBundle:
    """Replace the signed prekey and restart its age.

    Re-sending the stored key does not renew its age: once it is older than
    E2EE_SIGNED_PREKEY_MAX_AGE_DAYS that is 409 BUNDLE_STALE; before that, a no-op.
    """
    errors: dict[str, Any] = {}
    spk = _clean_signed(
        {"key_id": key_id, "public_key": public_key, "signature": signature}, "signed_prekey", errors
    )
    _raise_if(errors.get("signed_prekey", {}))  # a flat body: report its fields at top level

    with transaction.atomic():
        device = _lock_active_device(device)
        _verify(_signing_key_raw(device), spk, "signed_prekey")
        bundle = KeyBundle.objects.select_for_update().get(pk=device.pk)
        if spk["public_key"] == bundle.signed_prekey:
            # The stored key again (under any id): it must not renew its age.
            if bundle.signed_prekey_uploaded_at < _stale_before():
                raise ApiError(
                    "BUNDLE_STALE",
                    f"The signed prekey is older than {settings.E2EE_SIGNED_PREKEY_MAX_AGE_DAYS} days; "
                    "upload a new one.",
                )
            if spk["key_id"] != bundle.signed_prekey_id:
                raise ApiError("CONFLICT", "That is the current signed prekey under another key_id.")
            return bundle
        if spk["key_id"] == bundle.signed_prekey_id:
            raise ApiError("CONFLICT", "That key_id is the current signed prekey's; use a new key_id.")
        now = timezone.now()
        bundle.signed_prekey_id = spk["key_id"]
        bundle.signed_prekey = spk["public_key"]
        bundle.signed_prekey_signature = spk["signature"]
        bundle.signed_prekey_uploaded_at = now
        bundle.updated_at = now
        bundle.save(
            update_fields=[
                "signed_prekey_id",
                "signed_prekey",
                "signed_prekey_signature",
                "signed_prekey_uploaded_at",
                "updated_at",
            ]
        )
        Device.objects.filter(pk=device.pk).update(last_seen_at=now)
    return bundle


# --- Activity -------------------------------------------------------------------------------


def device_seen(*, device_id: Any) -> None:
    """The device is in use now (a stream opened for it): `e2ee_devices.last_seen_at`."""
    Device.objects.filter(pk=device_id).update(last_seen_at=timezone.now())


# --- Revocation -----------------------------------------------------------------------------


def device_revoke(*, device: Device, by_user: User) -> Device:
    """Revoke a device: its sessions end, keys and queued messages go, its streams close.

    A user may revoke any of their own devices; staff (the admin action) any device.
    """
    if device.user_id != by_user.pk and not by_user.is_staff:
        raise ApiError("NOT_FOUND", "No such device.")
    with transaction.atomic():
        # FOR NO KEY UPDATE on the device row waits for bundle claims (FOR SHARE) and key uploads
        # in flight, and makes a concurrent second revoke see `revoked` (409) instead of repeating.
        # It does not block senders' foreign-key checks (FOR KEY SHARE) when they insert deliveries.
        locked = Device.objects.select_for_update(no_key=True).filter(pk=device.pk).first()
        if locked is None:
            raise ApiError("NOT_FOUND", "No such device.")
        if locked.status == Device.Status.REVOKED:
            raise ApiError("DEVICE_REVOKED", "This device is already revoked.")
        # Senders hold dm_device_queues row locks from taking a sequence number until commit:
        # deleting the row waits for sends in flight (their deliveries are deleted below too), and
        # a send that comes after finds no queue for the device, so nothing more is queued to it.
        DeviceQueue.objects.filter(pk=locked.pk).delete()
        now = timezone.now()
        locked.status = Device.Status.REVOKED
        locked.revoked_at = now
        locked.save(update_fields=["status", "revoked_at"])
        prekeys, _ = OneTimePrekey.objects.filter(device=locked).delete()
        KeyBundle.objects.filter(pk=locked.pk).delete()
        queued, _ = Delivery.objects.filter(device=locked, delivered_at__isnull=True).delete()
        sessions = sessions_revoke_for_device(device_id=locked.pk, reason="device_revoked")
        close_streams(device_id=locked.pk, code=REVOKED_CLOSE_CODE, reason="device revoked")
        SecurityEvent.objects.create(
            kind=SecurityEvent.Kind.DEVICE_REVOKED,
            user_id=locked.user_id,
            data={
                "device_id": str(locked.pk),
                "by": by_user.pk,
                "sessions_revoked": sessions,
                "prekeys_deleted": prekeys,
                "queued_deleted": queued,
            },
        )
    security_log.info(
        "security event: device revoked",
        extra={
            "event": "device_revoked",
            "user_id": locked.user_id,
            "device_id": str(locked.pk),
            "by": by_user.pk,
        },
    )
    return locked


# --- Bundles --------------------------------------------------------------------------------

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
    stale_before = _stale_before()
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
