"""Writes for E2EE devices: register, bind a new session to an existing device, revoke, and mark
in use.

Key checks (base64, key ids, signatures) are in `dm.keys`; key uploads and rotation in
`dm.services.prekeys`; bundle claims in `dm.services.bundles`. Key material is never logged nor
copied into security events.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chatsite.accounts.models import SecurityEvent, Session, User
from chatsite.accounts.services import session_bind_device, sessions_revoke_for_device
from chatsite.accounts.tokens import hash_token, new_token
from chatsite.api import throttling
from chatsite.api.errors import ApiError
from chatsite.api.single_use import SingleUseStore
from chatsite.realtime.close_codes import CloseCode
from chatsite.realtime.relay import close_streams
from dm.keys import (
    KEY_BYTES,
    SIGNATURE_BYTES,
    OneTimeKeyIn,
    SignedKeyIn,
    clean_one_time_keys,
    clean_signed_key,
    device_bind_message,
    ed25519_verifies,
    normalise_key,
    raise_if_invalid,
    verify_signature,
)
from dm.models import Delivery, Device, DeviceQueue, KeyBundle, OneTimePrekey
from dm.selectors.devices import active_device_of_user
from dm.signals import device_added, device_revoked

logger = logging.getLogger("chatsite.dm")
security_log = logging.getLogger("chatsite.security")


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
    identity_key = normalise_key(identity_key, KEY_BYTES, errors, ("identity_key",))
    signing_key = normalise_key(signing_key, KEY_BYTES, errors, ("signing_key",))
    spk = clean_signed_key(signed_prekey, "signed_prekey", errors)
    fbk = clean_signed_key(fallback_key, "fallback_key", errors) if fallback_key is not None else None
    otpks = clean_one_time_keys(one_time_prekeys, errors)
    raise_if_invalid(errors)

    verify_signature(signing_key, spk, "signed_prekey")
    if fbk is not None:
        verify_signature(signing_key, fbk, "fallback_key")

    with transaction.atomic():
        # The user row lock serialises one user's registrations: the device cap and the
        # identity-change count cannot be raced past by parallel requests.
        user = User.objects.select_for_update(no_key=True).get(pk=session.user_id)
        _lock_unbound_session(session)
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
        device_added.send(sender=Device, user_id=user.pk, device_id=device.pk)
    logger.info(
        "device registered", extra={"user_id": user.pk, "device_id": str(device.pk), "uploaded": len(otpks)}
    )
    return device


# --- Coming back on an existing device ---------------------------------------------------------
#
# A new session (after log-out or token expiry) takes over one of the user's active devices only
# by proving it holds the device's private Ed25519 key: it asks for a challenge, the device signs
# `dm.keys.device_bind_message(challenge, device id, session id)`, and the bind checks that
# signature against the stored `signing_key`. A password alone never reaches a device's queue.
#
# Challenges live in Redis under `e2ee:bind_challenge:<session>:<device>:<sha256(challenge)>` for
# E2EE_DEVICE_CHALLENGE_TTL_S, so one is good only for the session and device it was issued to.
# With REDIS_URL unset (embedded mode: one process) they live in this process's memory instead.

_CHALLENGE_KEY = "e2ee:bind_challenge:{}:{}:{}"
_challenges = SingleUseStore(unavailable_detail="Device challenges are unavailable; retry.")


def _challenge_key(*, session_id: Any, device_id: Any, challenge: str) -> str:
    return _CHALLENGE_KEY.format(session_id, device_id, hash_token(challenge))


def _bindable_device(*, session: Session, device_id: Any) -> Device:
    """The user's own active device, for a session that has none: someone else's or unknown is
    404, revoked 409 DEVICE_REVOKED, a session already acting as an active device 409 CONFLICT."""
    device = active_device_of_user(user=session.user, device_id=device_id)
    if (
        session.device_id is not None
        and Device.objects.filter(pk=session.device_id, status=Device.Status.ACTIVE).exists()
    ):
        raise ApiError("CONFLICT", "This session already has a device.")
    return device


def _lock_unbound_session(session: Session) -> None:
    """Lock the session's row and refuse (409) if it already acts as an active device. The row
    lock makes "a session is bound to at most one device" hold against a concurrent
    device_register or device_bind by the same session (both take it)."""
    bound = (
        Session.objects.select_for_update(no_key=True).values_list("device_id", flat=True).get(pk=session.pk)
    )
    if bound and Device.objects.filter(pk=bound, status=Device.Status.ACTIVE).exists():
        raise ApiError("CONFLICT", "This session already has a device.")


def device_challenge_issue(*, session: Session, device_id: Any) -> tuple[str, datetime]:
    """A random single-use challenge for binding `session` to its user's device `device_id`, and
    when it expires. At most E2EE_DEVICE_CHALLENGES_PER_USER_PER_HOUR per user, whatever the
    session: logging in again must not buy more (each failed bind is a flagged security event)."""
    throttling.check(
        "device_challenge",
        session.user_id,
        limit=settings.E2EE_DEVICE_CHALLENGES_PER_USER_PER_HOUR,
        window_seconds=3600,
        detail="Too many device challenges for this account; try again later.",
    )
    device = _bindable_device(session=session, device_id=device_id)
    challenge = new_token()
    ttl = settings.E2EE_DEVICE_CHALLENGE_TTL_S
    _challenges.put(
        _challenge_key(session_id=session.pk, device_id=device.pk, challenge=challenge), "1", ttl_seconds=ttl
    )
    return challenge, timezone.now() + timedelta(seconds=ttl)


def _challenge_spend(*, session_id: Any, device_id: Any, challenge: str) -> bool:
    """True once for a live challenge of this session and device (SingleUseStore: of two binds
    racing with one challenge exactly one gets it)."""
    key = _challenge_key(session_id=session_id, device_id=device_id, challenge=challenge)
    return _challenges.take(key) is not None


def device_bind(
    *, session: Session, device_id: Any, challenge: str, signature: str, ip: str | None = None
) -> Device:
    """Bind `session` to its user's existing device, given the device's signature over
    `device_bind_message(challenge, device id, session id)`.

    A well-formed attempt on a bindable device spends the challenge, whatever the signature (410
    GONE if it is unknown, expired, already used, or was issued to another session or device).
    A signature that does not verify with the device's stored signing key is 400
    INVALID_SIGNATURE and a flagged security event; nothing is bound.
    On success any other session still holding the device (live, or expired but not revoked) is
    revoked and its streams close: a device acts through one session at a time.
    """
    errors: dict[str, Any] = {}
    if not isinstance(challenge, str) or not 0 < len(challenge) <= 128:
        errors["challenge"] = ["Must be the challenge string from POST /e2ee/devices/{id}/challenge."]
    signature = normalise_key(signature, SIGNATURE_BYTES, errors, ("signature",))
    raise_if_invalid(errors)
    device = _bindable_device(session=session, device_id=device_id)
    if not _challenge_spend(session_id=session.pk, device_id=device.pk, challenge=challenge):
        raise ApiError(
            "GONE",
            "No such challenge: it expired, was already used, or was issued to another session or "
            "device. Ask for a new one.",
        )
    message = device_bind_message(challenge=challenge, device_id=device.pk, session_id=session.pk)
    if not ed25519_verifies(device.signing_key, signature, message):
        SecurityEvent.objects.create(
            kind=SecurityEvent.Kind.DEVICE_BIND_FAILED,
            user_id=session.user_id,
            ip=ip,
            flagged=True,
            data={"device_id": str(device.pk), "session_id": str(session.pk), "reason": "bad_signature"},
        )
        security_log.warning(
            "security event: device bind refused (bad signature)",
            extra={
                "event": "device_bind_failed",
                "user_id": session.user_id,
                "device_id": str(device.pk),
                "session_id": str(session.pk),
            },
        )
        raise ApiError(
            "INVALID_SIGNATURE",
            "The signature does not verify with the device's signing key.",
            field="signature",
        )
    with transaction.atomic():
        # The device row lock (FOR NO KEY UPDATE, as device_revoke takes it, and first, in the
        # same order) serialises a bind with a revocation and with another bind of this device:
        # a revoked device is never bound, and two binds cannot both revoke "the other" session.
        locked = Device.objects.select_for_update(no_key=True).filter(pk=device.pk).first()
        if locked is None:
            raise ApiError("NOT_FOUND", "No such device.")
        if locked.status != Device.Status.ACTIVE:
            raise ApiError("DEVICE_REVOKED")
        _lock_unbound_session(session)
        # uq_sessions_live_device (one unrevoked session per device) is what finally guarantees
        # one session per device; revoking the previous holders first keeps it satisfied.
        replaced = sessions_revoke_for_device(device_id=locked.pk, reason="device_rebound")
        session_bind_device(session=session, device_id=locked.pk)
        locked.last_seen_at = timezone.now()
        locked.save(update_fields=["last_seen_at"])
        SecurityEvent.objects.create(
            kind=SecurityEvent.Kind.DEVICE_BOUND,
            user_id=session.user_id,
            ip=ip,
            data={"device_id": str(locked.pk), "session_id": str(session.pk), "sessions_revoked": replaced},
        )
    security_log.info(
        "security event: session bound to an existing device",
        extra={
            "event": "device_bound",
            "user_id": session.user_id,
            "device_id": str(locked.pk),
            "session_id": str(session.pk),
            "sessions_revoked": replaced,
        },
    )
    return locked


# --- Activity -------------------------------------------------------------------------------


def device_seen(*, device_id: Any) -> None:
    """The device is in use now (a stream opened for it): `e2ee_devices.last_seen_at`."""
    Device.objects.filter(pk=device_id).update(last_seen_at=timezone.now())


# --- Revocation -----------------------------------------------------------------------------


def device_revoke(*, device: Device, by_user: User | None, reason: str = "") -> Device:
    """Revoke a device: its sessions end, keys and queued messages go, its streams close.

    A user may revoke any of their own devices; staff (the admin action) any device; `by_user`
    None is an operator at `manage.py revoke_device` without --by. `reason` goes into the
    security event.
    """
    if by_user is not None and device.user_id != by_user.pk and not by_user.is_staff:
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
        close_streams(device_id=locked.pk, code=CloseCode.FORBIDDEN, reason="device revoked")
        device_revoked.send(sender=Device, user_id=locked.user_id, device_id=locked.pk)
        SecurityEvent.objects.create(
            kind=SecurityEvent.Kind.DEVICE_REVOKED,
            user_id=locked.user_id,
            data={
                "device_id": str(locked.pk),
                "by": by_user.pk if by_user else None,
                "reason": reason[:200],
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
            "by": by_user.pk if by_user else None,
        },
    )
    return locked
