"""Reads for E2EE devices and their key pools."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Avg, Count, F, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from chatsite.accounts.models import Session, User
from chatsite.api.errors import ApiError
from dm.models import Delivery, Device, DeviceQueue, OneTimePrekey


@dataclass(frozen=True)
class DeviceSummary:
    """One row of GET /e2ee/devices."""

    device_id: Any
    device_name: str
    status: str
    identity_key: str
    signing_key: str
    prekeys_remaining: int
    signed_prekey_age_days: int | None
    signed_prekey_stale: bool
    last_seen_at: datetime | None
    created_at: datetime
    current: bool


def _summary(device: Device, *, now: datetime, current_device_id: Any) -> DeviceSummary:
    uploaded = getattr(device, "spk_uploaded_at", None)
    age = (now - uploaded).days if uploaded else None
    return DeviceSummary(
        device_id=device.device_id,
        device_name=device.device_name,
        status=device.status,
        identity_key=device.identity_key,
        signing_key=device.signing_key,
        prekeys_remaining=getattr(device, "pool", None) or 0,
        signed_prekey_age_days=age,
        signed_prekey_stale=uploaded is not None
        and uploaded < now - timedelta(days=settings.E2EE_SIGNED_PREKEY_MAX_AGE_DAYS),
        last_seen_at=device.last_seen_at,
        created_at=device.created_at,
        current=current_device_id is not None and device.device_id == current_device_id,
    )


def _with_bundle(qs: QuerySet[Device]) -> QuerySet[Device]:
    # A LEFT JOIN on the bundle: revoked devices have none (their keys are deleted).
    return qs.annotate(
        pool=F("bundle__prekeys_remaining"), spk_uploaded_at=F("bundle__signed_prekey_uploaded_at")
    )


def devices_for_user(user: User, *, current_session: Session | None = None) -> list[DeviceSummary]:
    """The user's devices, active and revoked, oldest first; one query."""
    now = timezone.now()
    current = current_session.device_id if current_session is not None else None
    devices = _with_bundle(Device.objects.filter(user=user)).order_by("created_at", "device_id")
    return [_summary(d, now=now, current_device_id=current) for d in devices]


def device_summary(device_id: Any, *, current_session: Session | None = None) -> DeviceSummary:
    device = _with_bundle(Device.objects.filter(pk=device_id)).get()
    current = current_session.device_id if current_session is not None else None
    return _summary(device, now=timezone.now(), current_device_id=current)


def device_for_session(device_id: Any) -> Device:
    """The active device a session acts as, given the session's `device_id` (REST:
    `request.auth.device_id`; streams: `stream.device_id`), for every device-scoped call: send,
    fetch, ack, sync, streams. None is 409 DEVICE_REQUIRED (register one first); a device that is
    revoked, or no longer exists, is 409 DEVICE_REVOKED (register a new one)."""
    if device_id is None:
        raise ApiError("DEVICE_REQUIRED")
    device = Device.objects.filter(pk=device_id).first()
    if device is None or device.status != Device.Status.ACTIVE:
        raise ApiError("DEVICE_REVOKED")
    return device


def acked_position(device_id: Any) -> int:
    """The device's acknowledged queue position (`dm_device_queues.acked_seq`), 0 if none."""
    position = DeviceQueue.objects.filter(device_id=device_id).values_list("acked_seq", flat=True).first()
    return position or 0


def device_of_user(*, user: User, device_id: Any) -> Device:
    """One of the user's devices, in any status; someone else's (or none) is 404."""
    device = Device.objects.filter(pk=device_id, user=user).first()
    if device is None:
        raise ApiError("NOT_FOUND", "No such device.")
    return device


def key_owner_device(*, session: Session, device_id: Any) -> Device:
    """For key uploads (prekeys, signed prekey): the session's own device only. Another device of
    the same account is 403: one-time prekeys are not signed, so a session that only knows the
    password could otherwise fill a device's pool with keys nobody can decrypt for. Someone
    else's (or no) device is 404; a revoked one 409 DEVICE_REVOKED."""
    device = active_device_of_user(user=session.user, device_id=device_id)
    if session.device_id is None or str(session.device_id) != str(device.pk):
        raise ApiError("PERMISSION_DENIED", "Only the device itself may upload its keys.")
    return device


def active_device_of_user(*, user: User, device_id: Any) -> Device:
    """For key uploads: the user's own device, which must be active (409 DEVICE_REVOKED)."""
    device = device_of_user(user=user, device_id=device_id)
    if device.status != Device.Status.ACTIVE:
        raise ApiError("DEVICE_REVOKED")
    return device


def active_devices(user_id: int) -> list:
    """Ids of the user's active devices (the recipients a message must be encrypted for)."""
    return list(
        Device.objects.filter(user_id=user_id, status=Device.Status.ACTIVE)
        .order_by("created_at", "device_id")
        .values_list("device_id", flat=True)
    )


def otpk_pool_summary() -> dict[str, Any]:
    """One-time prekey pools of active devices, for /dm/metrics and the runbook's alerts."""
    pool = Coalesce(F("bundle__prekeys_remaining"), 0)
    stats = (
        Device.objects.filter(status=Device.Status.ACTIVE)
        .annotate(pool=pool)
        .aggregate(
            devices_under_5=Count("pk", filter=Q(pool__lt=settings.E2EE_OTPK_CRITICAL)),
            devices_under_10=Count("pk", filter=Q(pool__lt=settings.E2EE_OTPK_LOW_WATERMARK)),
            average_prekeys=Avg("pool"),
        )
    )
    return {
        "devices_under_5": stats["devices_under_5"],
        "devices_under_10": stats["devices_under_10"],
        "average_prekeys": round(float(stats["average_prekeys"] or 0.0), 2),
    }


@dataclass(frozen=True)
class DeviceRevokePlan:
    """What revoking a device would end or delete (dm.services.devices.device_revoke), read-only:
    the confirmation of `manage.py revoke_device` and of the admin's "Revoke devices"."""

    device: Device
    sessions: int
    prekeys: int
    queued: int

    def describe(self) -> str:
        device = self.device
        return (
            f"device {device.pk} ({device.device_name!r} of {device.user.username}): end "
            f"{self.sessions} session(s), delete its key bundle and {self.prekeys} one-time "
            f"prekey(s), delete {self.queued} undelivered message(s) queued to it, close its streams"
        )


def device_revoke_plan(device: Device) -> DeviceRevokePlan:
    """Three counts, each on an index of its table (sessions by device, prekeys by device,
    dm_delivery_pending_idx); nothing is locked, so the revoke itself may find a few more."""
    return DeviceRevokePlan(
        device=device,
        sessions=Session.objects.filter(device_id=device.pk, revoked_at__isnull=True).count(),
        prekeys=OneTimePrekey.objects.filter(device=device).count(),
        queued=Delivery.objects.filter(device=device, delivered_at__isnull=True).count(),
    )
