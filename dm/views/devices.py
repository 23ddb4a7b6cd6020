"""Thin REST adapters for E2EE devices, their keys and key bundles.

Writes: dm.services.devices, dm.services.prekeys, dm.services.bundles; reads: dm.selectors.devices.
The serializers parse the shape; the services check every rule on keys.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from chatsite.api.flags import feature_permission
from chatsite.api.request import client_ip
from chatsite.api.schema import error_responses
from dm.selectors import devices as selectors
from dm.serializers import devices as s
from dm.services.bundles import bundle_claim
from dm.services.devices import device_bind, device_challenge_issue, device_register, device_revoke
from dm.services.prekeys import prekeys_upload, signed_prekey_rotate


def _errors(*codes: str) -> dict:
    """Error responses of a DM view: every one answers 403 FEATURE_DISABLED when dm is off."""
    return error_responses("FEATURE_DISABLED", *codes)


class _DmView(APIView):
    permission_classes = [feature_permission("dm"), IsAuthenticated]


class DeviceListView(_DmView):
    @extend_schema(operation_id="e2ee_devices_list", responses={200: s.DeviceListSerializer, **_errors()})
    def get(self, request):
        devices = selectors.devices_for_user(request.user, current_session=request.auth)
        return Response({"devices": s.DeviceSerializer(devices, many=True).data})

    @extend_schema(
        operation_id="e2ee_devices_register",
        request=s.DeviceRegisterSerializer,
        responses={201: s.DeviceSerializer, **_errors("INVALID_SIGNATURE", "CONFLICT", "DEVICE_LIMIT")},
        description="Register a device and bind the calling session to it. Signatures are verified "
        "(400 INVALID_SIGNATURE); 409 DEVICE_LIMIT past E2EE_MAX_DEVICES_PER_USER.",
    )
    def post(self, request):
        data = s.DeviceRegisterSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        device = device_register(
            session=request.auth,
            name=v["device_name"],
            identity_key=v["identity_key"],
            signing_key=v["signing_key"],
            signed_prekey=v["signed_prekey"],
            one_time_prekeys=v["one_time_prekeys"],
            fallback_key=v["fallback_key"],
        )
        summary = selectors.device_summary(device.pk, current_session=request.auth)
        return Response(s.DeviceSerializer(summary).data, status=status.HTTP_201_CREATED)


class DeviceDetailView(_DmView):
    @extend_schema(
        operation_id="e2ee_devices_retrieve", responses={200: s.DeviceSerializer, **_errors("NOT_FOUND")}
    )
    def get(self, request, device_id):
        device = selectors.device_of_user(user=request.user, device_id=device_id)
        return Response(
            s.DeviceSerializer(selectors.device_summary(device.pk, current_session=request.auth)).data
        )

    @extend_schema(
        operation_id="e2ee_devices_revoke",
        responses={204: None, **_errors("NOT_FOUND", "DEVICE_REVOKED")},
        description="Revoke one of your devices: its sessions end, its keys and queued messages are "
        "deleted and its streams close.",
    )
    def delete(self, request, device_id):
        device = selectors.device_of_user(user=request.user, device_id=device_id)
        device_revoke(device=device, by_user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DevicePrekeysView(_DmView):
    @extend_schema(
        operation_id="e2ee_devices_prekeys_upload",
        request=s.PrekeysUploadSerializer,
        responses={
            200: s.PrekeysRemainingSerializer,
            **_errors("INVALID_SIGNATURE", "PERMISSION_DENIED", "NOT_FOUND", "DEVICE_REVOKED", "CONFLICT"),
        },
    )
    def post(self, request, device_id):
        device = selectors.key_owner_device(session=request.auth, device_id=device_id)
        data = s.PrekeysUploadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        remaining = prekeys_upload(device=device, **data.validated_data)
        return Response({"prekeys_remaining": remaining})


class DeviceSignedPrekeyView(_DmView):
    @extend_schema(
        operation_id="e2ee_devices_signed_prekey_rotate",
        request=s.SignedPrekeyRotateSerializer,
        responses={
            200: s.SignedPrekeyOutSerializer,
            **_errors(
                "INVALID_SIGNATURE",
                "PERMISSION_DENIED",
                "NOT_FOUND",
                "DEVICE_REVOKED",
                "BUNDLE_STALE",
                "CONFLICT",
            ),
        },
    )
    def put(self, request, device_id):
        device = selectors.key_owner_device(session=request.auth, device_id=device_id)
        data = s.SignedPrekeyRotateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        bundle = signed_prekey_rotate(device=device, **data.validated_data)
        return Response(
            {
                "device_id": str(device.pk),
                "signed_prekey": {
                    "key_id": bundle.signed_prekey_id,
                    "public_key": bundle.signed_prekey,
                    "signature": bundle.signed_prekey_signature,
                },
                "signed_prekey_uploaded_at": bundle.signed_prekey_uploaded_at,
            }
        )


class DeviceChallengeView(_DmView):
    @extend_schema(
        operation_id="e2ee_devices_challenge",
        request=None,
        responses={
            201: s.DeviceChallengeSerializer,
            **_errors("NOT_FOUND", "DEVICE_REVOKED", "CONFLICT", "RATE_LIMITED", "SERVICE_UNAVAILABLE"),
        },
        description="Coming back on an existing device (docs/dm.md): a single-use challenge for "
        "the calling session, which must have no device, to bind to one of your active devices. "
        "Valid E2EE_DEVICE_CHALLENGE_TTL_S seconds; E2EE_DEVICE_CHALLENGES_PER_USER_PER_HOUR.",
    )
    def post(self, request, device_id):
        challenge, expires_at = device_challenge_issue(session=request.auth, device_id=device_id)
        return Response(
            {"challenge": challenge, "expires_at": expires_at},
            status=status.HTTP_201_CREATED,
            headers={"Cache-Control": "no-store"},
        )


class DeviceBindView(_DmView):
    @extend_schema(
        operation_id="e2ee_devices_bind",
        request=s.DeviceBindSerializer,
        responses={
            200: s.DeviceSerializer,
            **_errors(
                "INVALID_SIGNATURE", "NOT_FOUND", "DEVICE_REVOKED", "CONFLICT", "GONE", "SERVICE_UNAVAILABLE"
            ),
        },
        description="Bind the calling session to the device, given the device's signature over "
        "the challenge, device id and session id (400 INVALID_SIGNATURE otherwise; 410 GONE for an "
        "unknown, expired or used challenge). The device's previous session is revoked.",
    )
    def post(self, request, device_id):
        data = s.DeviceBindSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        device = device_bind(
            session=request.auth, device_id=device_id, ip=client_ip(request), **data.validated_data
        )
        summary = selectors.device_summary(device.pk, current_session=request.auth)
        return Response(s.DeviceSerializer(summary).data)


class BundleView(_DmView):
    @extend_schema(
        operation_id="e2ee_bundles_claim",
        responses={
            200: s.BundleSerializer,
            **_errors("NOT_FOUND", "BLOCKED", "PREKEYS_EXHAUSTED", "RATE_LIMITED"),
        },
        description="Claims one one-time prekey per active device of the user (oldest first, never "
        "twice); the fallback key, flagged, when a pool is empty. Rate limited per (requesting user, "
        "target device) pair.",
    )
    def get(self, request, user_id: int):
        return Response(bundle_claim(requester_session=request.auth, target_user_id=user_id))
