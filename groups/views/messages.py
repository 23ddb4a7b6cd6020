"""Thin REST adapters for sender keys, group messages, acks and /groups/metrics
(docs/groups.md, "Messages")."""

from __future__ import annotations

from django.conf import settings
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from chatsite.api import flags
from chatsite.api.flags import feature_permission
from chatsite.api.params import IntParam, parse_int_params
from chatsite.api.schema import error_responses
from chatsite.realtime.relay import redis_status
from dm.selectors.devices import device_for_session
from groups.models import Group
from groups.presenters_messages import sender_key_body, sent_body
from groups.selectors import messages as message_selectors
from groups.selectors.members import require_member
from groups.serializers.messages import (
    GroupAckResultSerializer,
    GroupAckSerializer,
    GroupDistributeSerializer,
    GroupMessagePageSerializer,
    GroupMetricsSerializer,
    GroupSenderKeyListSerializer,
    GroupSendSerializer,
    GroupSentSerializer,
)
from groups.services import messages as message_services
from groups.services import sender_keys as sender_key_services

GROUPS_ENABLED = feature_permission("groups")


def _errors(*codes: str) -> dict:
    """Every group view answers 403 FEATURE_DISABLED when groups are off, and 404/403 for a group
    that does not exist or that the caller is not a member of."""
    return error_responses("FEATURE_DISABLED", "NOT_FOUND", "NOT_MEMBER", *codes)


class SenderKeysView(APIView):
    permission_classes = [GROUPS_ENABLED, IsAuthenticated]

    @extend_schema(
        request=GroupDistributeSerializer,
        responses={
            201: OpenApiResponse(
                GroupSentSerializer, description="Stored; each envelope published to its device."
            ),
            200: OpenApiResponse(
                GroupSentSerializer, description="A repeat: the original distribution, `duplicate`."
            ),
            **_errors(
                "VALIDATION_ERROR",
                "BAD_REQUEST",
                "DEVICE_REQUIRED",
                "DEVICE_REVOKED",
                "EPOCH_STALE",
                "DEVICE_MISMATCH",
                "CONFLICT",
                "PAYLOAD_TOO_LARGE",
            ),
        },
    )
    def post(self, request, group_id):
        body = GroupDistributeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        device = device_for_session(request.auth.device_id)
        require_member(group_id=group_id, user_id=request.user.pk)
        result = sender_key_services.sender_key_distribute(
            group_id=group_id,
            sender_user_id=request.user.pk,
            sender_device_id=device.pk,
            group_epoch=data["group_epoch"],
            sender_key_id=data["sender_key_id"],
            client_message_id=data.get("client_message_id"),
            envelopes=[dict(e) for e in data["envelopes"]],
        )
        return Response(
            sent_body(result.message, duplicate=result.duplicate, recipients=result.recipients),
            status=status.HTTP_200_OK if result.duplicate else status.HTTP_201_CREATED,
        )

    @extend_schema(responses={200: GroupSenderKeyListSerializer, **_errors()})
    def get(self, request, group_id):
        """The caller's own sender keys in the group (newest first), each with the per-device
        acknowledgement ledger of its envelopes."""
        require_member(group_id=group_id, user_id=request.user.pk)
        keys = sender_key_services.sender_keys_of_user(group_id=group_id, user_id=request.user.pk)
        epoch = Group.objects.filter(pk=group_id).values_list("group_epoch", flat=True).first()
        return Response(
            {"group_epoch": epoch, "sender_keys": [sender_key_body(k, list(k.envelopes.all())) for k in keys]}
        )


class MessagesView(APIView):
    permission_classes = [GROUPS_ENABLED, IsAuthenticated]

    @extend_schema(
        request=GroupSendSerializer,
        responses={
            201: OpenApiResponse(
                GroupSentSerializer, description="Stored; published to every other member device."
            ),
            200: OpenApiResponse(GroupSentSerializer, description="A resend of a stored client_message_id."),
            **_errors(
                "VALIDATION_ERROR",
                "DEVICE_REQUIRED",
                "DEVICE_REVOKED",
                "EPOCH_STALE",
                "SENDER_KEY_REQUIRED",
                "CONFLICT",
                "PAYLOAD_TOO_LARGE",
                "RATE_LIMITED",
                "MESSAGE_WRITE_DISABLED",
            ),
        },
    )
    def post(self, request, group_id):
        body = GroupSendSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        device = device_for_session(request.auth.device_id)
        require_member(group_id=group_id, user_id=request.user.pk)
        result = message_services.group_message_send(
            group_id=group_id,
            sender_user_id=request.user.pk,
            sender_device_id=device.pk,
            **data,
        )
        return Response(
            sent_body(result.message, duplicate=result.duplicate, recipients=result.recipients),
            status=status.HTTP_200_OK if result.duplicate else status.HTTP_201_CREATED,
        )

    @extend_schema(
        parameters=[OpenApiParameter("since", int), OpenApiParameter("limit", int)],
        responses={
            200: GroupMessagePageSerializer,
            **_errors("VALIDATION_ERROR", "DEVICE_REQUIRED", "DEVICE_REVOKED"),
        },
    )
    def get(self, request, group_id):
        """The group's messages after `since` (a seq) that the calling device may read."""
        params = parse_int_params(
            request.query_params,
            since=IntParam(default=0),
            limit=IntParam(
                default=settings.GROUP_FETCH_PAGE_SIZE, minimum=1, maximum=settings.GROUP_FETCH_PAGE_SIZE
            ),
        )
        device = device_for_session(request.auth.device_id)
        member = require_member(group_id=group_id, user_id=request.user.pk)
        page = message_selectors.group_messages_page(
            group_id=group_id,
            device_id=device.pk,
            joined_seq=member.joined_seq,
            since=params["since"],
            limit=params["limit"],
        )
        return Response({"messages": page.frames, "cursor": page.cursor, "has_more": page.has_more})


class AckView(APIView):
    permission_classes = [GROUPS_ENABLED, IsAuthenticated]

    @extend_schema(
        request=GroupAckSerializer,
        responses={
            200: GroupAckResultSerializer,
            **_errors("VALIDATION_ERROR", "DEVICE_REQUIRED", "DEVICE_REVOKED"),
        },
    )
    def post(self, request, group_id):
        body = GroupAckSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        device = device_for_session(request.auth.device_id)
        require_member(group_id=group_id, user_id=request.user.pk)
        return Response(
            message_services.group_ack(
                group_id=group_id, device_id=device.pk, up_to_seq=body.validated_data["seq"]
            )
        )


class GroupMetricsView(APIView):
    """The operator view of groups (staff only)."""

    permission_classes = [IsAuthenticated, IsAdminUser]

    @extend_schema(responses={200: GroupMetricsSerializer, **error_responses("PERMISSION_DENIED")})
    def get(self, request):
        return Response(
            {
                "enabled": flags.is_enabled("groups"),
                "redis_status": redis_status(),
                **message_selectors.metrics_summary(),
            }
        )


urlpatterns = [
    path("groups/metrics", GroupMetricsView.as_view(), name="groups-metrics"),
    path("groups/<uuid:group_id>/sender-keys", SenderKeysView.as_view(), name="groups-sender-keys"),
    path("groups/<uuid:group_id>/messages", MessagesView.as_view(), name="groups-messages"),
    path("groups/<uuid:group_id>/ack", AckView.as_view(), name="groups-ack"),
]
