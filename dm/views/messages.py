"""Thin REST adapters for conversations, sends, the device queue, acks, SSE and /dm/metrics."""

from __future__ import annotations

from channels.db import database_sync_to_async
from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from chatsite.api import flags
from chatsite.api.errors import ApiError, error_response, json_error
from chatsite.api.flags import feature_permission
from chatsite.api.params import IntParam, parse_int_params
from chatsite.api.schema import error_responses, plain_view_schema
from chatsite.realtime import sse
from chatsite.realtime.relay import redis_status
from dm.presenters import sent_body
from dm.selectors import messages as message_selectors
from dm.selectors.devices import device_for_session, otpk_pool_summary
from dm.serializers.messages import (
    AckResultSerializer,
    AckSerializer,
    ConversationListSerializer,
    ConversationSerializer,
    FetchResultSerializer,
    OpenConversationSerializer,
    SendSerializer,
    SentSerializer,
    parse_send,
)
from dm.services import messages as message_services

DM_ENABLED = feature_permission("dm")


def _errors(*codes: str) -> dict:
    """Error responses of a DM view: every one answers 403 FEATURE_DISABLED when dm is off."""
    return error_responses("FEATURE_DISABLED", *codes)


class ConversationListView(APIView):
    permission_classes = [DM_ENABLED, IsAuthenticated]

    @extend_schema(responses={200: ConversationListSerializer, **_errors()})
    def get(self, request):
        conversations = message_selectors.conversations_for_user(user_id=request.user.pk)
        data = ConversationSerializer(conversations, many=True, context={"user_id": request.user.pk}).data
        return Response({"conversations": data})

    @extend_schema(
        request=OpenConversationSerializer,
        responses={
            201: OpenApiResponse(ConversationSerializer, description="Opened: the first call for this pair."),
            200: OpenApiResponse(ConversationSerializer, description="Already open: the same conversation."),
            **_errors("BAD_REQUEST", "NOT_FOUND", "RATE_LIMITED"),
        },
    )
    def post(self, request):
        body = OpenConversationSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        conversation, created = message_services.conversation_open(
            user=request.user, other_user_id=body.validated_data["user_id"]
        )
        data = ConversationSerializer(conversation, context={"user_id": request.user.pk}).data
        return Response(data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class MessageSendView(APIView):
    permission_classes = [DM_ENABLED, IsAuthenticated]

    @extend_schema(
        request=SendSerializer,
        responses={
            201: OpenApiResponse(SentSerializer, description="Stored and queued for every recipient device."),
            200: OpenApiResponse(
                SentSerializer,
                description="A resend of a stored client_message_id: the original, `duplicate`.",
            ),
            **_errors(
                "BAD_REQUEST",
                "NOT_FOUND",
                "DEVICE_REQUIRED",
                "DEVICE_REVOKED",
                "DEVICE_MISMATCH",
                "BLOCKED",
                "PAYLOAD_TOO_LARGE",
                "RATE_LIMITED",
                "MESSAGE_WRITE_DISABLED",
            ),
        },
    )
    def post(self, request, conversation_id: int):
        body = parse_send(request.data, conversation_required=False)
        device = device_for_session(request.auth.device_id)
        result = message_services.message_send(
            sender_id=request.user.pk,
            sender_device_id=device.pk,
            conversation_id=conversation_id,
            client_message_id=body["client_message_id"],
            envelopes=body["envelopes"],
        )
        return Response(
            sent_body(result), status=status.HTTP_200_OK if result.duplicate else status.HTTP_201_CREATED
        )


class MessageFetchView(APIView):
    """The calling device's queue after a cursor (the polling fallback)."""

    permission_classes = [DM_ENABLED, IsAuthenticated]

    @extend_schema(
        parameters=[OpenApiParameter("since", int), OpenApiParameter("limit", int)],
        responses={
            200: FetchResultSerializer,
            **_errors("VALIDATION_ERROR", "DEVICE_REQUIRED", "DEVICE_REVOKED"),
        },
    )
    def get(self, request):
        params = parse_int_params(
            request.query_params,
            since=IntParam(default=0),
            limit=IntParam(
                default=settings.DM_FETCH_PAGE_SIZE, minimum=1, maximum=settings.DM_FETCH_PAGE_SIZE
            ),
        )
        device = device_for_session(request.auth.device_id)
        page = message_services.queue_page_read(
            device_id=device.pk, after=params["since"], limit=params["limit"]
        )
        return Response({"messages": page.frames, "cursor": page.cursor, "has_more": page.has_more})


class AckView(APIView):
    permission_classes = [DM_ENABLED, IsAuthenticated]

    @extend_schema(
        request=AckSerializer,
        responses={200: AckResultSerializer, **_errors("DEVICE_REQUIRED", "DEVICE_REVOKED")},
    )
    def post(self, request):
        body = AckSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        device = device_for_session(request.auth.device_id)
        return Response(message_services.deliveries_ack(device=device, **body.validated_data))


class DmMetricsView(APIView):
    """Seed 001's operator view (staff only): relay, OTPK pools, message stats, latency."""

    permission_classes = [IsAuthenticated, IsAdminUser]

    @extend_schema(responses={200: OpenApiTypes.OBJECT, **error_responses("PERMISSION_DENIED")})
    def get(self, request):
        return Response(
            {
                "enabled": flags.is_enabled("dm"),
                "redis_status": redis_status(),
                "otpk_pools": otpk_pool_summary(),
                "message_stats": message_selectors.message_stats(),
                "undelivered": message_selectors.undelivered_count(),
                "delivery_latency": message_selectors.delivery_latency(),
                "deepest_queues": message_selectors.device_queue_stats(limit=10),
            }
        )


@plain_view_schema(
    operation_id="dm_sse",
    tags=["dm"],
    description="The calling device's queue as Server-Sent Events: `event: <type>` and `data: <json>` "
    "blocks, with the frame's cursor as `id:` (an EventSource resumes with Last-Event-ID). Events: "
    "`dm.message` (the shape of GET /dm/messages' messages), heartbeats carrying relay_lag, and "
    "`closing` before the server ends the stream. Authenticate with `Authorization: Bearer` or a "
    "single-use `?ticket=` from POST /auth/stream-ticket; the session must have a device. Errors "
    "come before the stream starts, as JSON.",
    parameters=[
        {
            "name": "cursor",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 0},
            "description": "Replay after this queue position (default: the device's acknowledged "
            "position; an invalid value is ignored).",
        },
        {
            "name": "Last-Event-ID",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "As `cursor`, as a browser's EventSource sends it on reconnect.",
        },
    ],
    security=[{"bearerAuth": []}, {"streamTicket": []}],
    responses={
        200: {
            "description": "The event stream, open until the client leaves or the server closes it.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
    errors=("UNAUTHENTICATED", "FEATURE_DISABLED", "DEVICE_REQUIRED", "DEVICE_REVOKED", "RATE_LIMITED"),
)
async def dm_sse(request):
    """GET /dm/sse: the calling device's queue as Server-Sent Events (cursor: ?cursor= or
    Last-Event-ID), with heartbeats carrying relay_lag."""
    if request.method != "GET":
        return json_error("METHOD_NOT_ALLOWED")
    if not flags.is_enabled("dm"):
        return json_error("FEATURE_DISABLED", flags.FLAGS["dm"].disabled_detail)
    session = await sse.authenticate(request)
    if session is None:
        response = json_error("UNAUTHENTICATED")
        response["WWW-Authenticate"] = 'Bearer realm="api"'  # as every other endpoint's 401
        return response
    try:
        await database_sync_to_async(device_for_session)(session.device_id)
    except ApiError as err:
        return error_response(err)
    return await sse.sse_response(request, session=session, feature="dm")
