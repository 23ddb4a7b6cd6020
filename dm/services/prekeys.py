"""Writes for a device's own keys: one-time prekey (and fallback key) uploads, signed prekey rotation.

Keys are checked by `dm.keys`; a revoked device uploads nothing (see _lock_active_device).
"""

from __future__ import annotations

import itertools
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from chatsite.api.errors import ApiError
from dm.keys import (
    OneTimeKeyIn,
    SignedKeyIn,
    clean_one_time_keys,
    clean_signed_key,
    raise_if_invalid,
    signed_prekey_stale_before,
    verify_signature,
)
from dm.models import Device, KeyBundle, OneTimePrekey


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


def prekeys_upload(
    *, device: Device, one_time_prekeys: list[OneTimeKeyIn], fallback_key: SignedKeyIn | None = None
) -> int:
    """Append one-time prekeys (and optionally replace the fallback key); returns the new count.

    The caller resolves `device` among its own devices (someone else's is 404 before this).
    """
    errors: dict[str, Any] = {}
    otpks = clean_one_time_keys(one_time_prekeys, errors)
    fbk = clean_signed_key(fallback_key, "fallback_key", errors) if fallback_key is not None else None
    if not otpks and fbk is None and "one_time_prekeys" not in errors:
        errors["one_time_prekeys"] = ["Upload at least one one-time prekey or a fallback key."]
    raise_if_invalid(errors)

    with transaction.atomic():
        device = _lock_active_device(device)
        if fbk is not None:
            verify_signature(device.signing_key, fbk, "fallback_key")
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
            raise ApiError(
                "VALIDATION_ERROR",
                errors={
                    "one_time_prekeys": [
                        f"A device may store at most {cap} one-time prekeys "
                        f"(E2EE_MAX_PREKEYS_PER_DEVICE); it has {remaining or 0}."
                    ]
                },
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
    spk = clean_signed_key(
        {"key_id": key_id, "public_key": public_key, "signature": signature}, "signed_prekey", errors
    )
    raise_if_invalid(errors.get("signed_prekey", {}))  # a flat body: report its fields at top level

    with transaction.atomic():
        device = _lock_active_device(device)
        verify_signature(device.signing_key, spk, "signed_prekey")
        bundle = KeyBundle.objects.select_for_update().get(pk=device.pk)
        if spk["public_key"] == bundle.signed_prekey:
            # The stored key again (under any id): it must not renew its age.
            if bundle.signed_prekey_uploaded_at < signed_prekey_stale_before():
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


def prekey_reminders_send(*, limit: int | None = None) -> int:
    """Send `keys.low` (docs/realtime.md, the event a claim sends when the pool runs low) to every
    active device with fewer than E2EE_PREKEY_REMINDER_BELOW one-time prekeys, at most once per
    device per E2EE_PREKEY_REMINDER_INTERVAL_S: a device that was offline when its pool ran down
    hears about it on its next connection, without a bundle claim to trigger it.

    "Once per interval" is an atomic add of a per-device key in the cache (Redis SET NX with the
    interval as its TTL), so two runs at once remind each device once.

    Bounded: at most E2EE_PREKEY_REMINDER_MAX_DEVICES devices *examined* a run (reminded or
    skipped as already reminded: the query is sliced to that many rows), lowest pools first; and
    it stops starting a new batch once JOB_TIME_BUDGET_S (chatsite.time_budget) has passed. Each
    batch of E2EE_PREKEY_REMINDER_BATCH_SIZE devices costs one MGET for the "already reminded"
    check (cache.get_many), then one SET NX per device not yet reminded. Devices past the bound
    wait for the next run. Reads e2ee_key_bundles once (one row per device). Returns the number
    of devices reminded; a second run within the interval reminds none."""
    from django.core.cache import cache

    from chatsite.realtime.relay import publish_to_devices
    from chatsite.time_budget import TimeBudget

    limit = limit or settings.E2EE_PREKEY_REMINDER_MAX_DEVICES
    batch_size = settings.E2EE_PREKEY_REMINDER_BATCH_SIZE
    budget = TimeBudget()
    low = (
        KeyBundle.objects.filter(
            prekeys_remaining__lt=settings.E2EE_PREKEY_REMINDER_BELOW, device__status=Device.Status.ACTIVE
        )
        .order_by("prekeys_remaining", "device_id")
        .values_list("device_id", "prekeys_remaining")[:limit]
    )
    events = []
    rows = low.iterator(chunk_size=batch_size)
    while not budget.spent():
        batch = list(itertools.islice(rows, batch_size))
        if not batch:
            break
        keys = {device_id: f"dm:keys_low_reminded:{device_id}" for device_id, _ in batch}
        reminded = cache.get_many(list(keys.values()))  # one MGET for the whole batch
        for device_id, remaining in batch:
            if keys[device_id] in reminded or not cache.add(
                keys[device_id], 1, timeout=settings.E2EE_PREKEY_REMINDER_INTERVAL_S
            ):
                continue
            events.append(
                (device_id, {"type": "keys.low", "device_id": str(device_id), "prekeys_remaining": remaining})
            )
    publish_to_devices(events, source="dm")
    return len(events)
