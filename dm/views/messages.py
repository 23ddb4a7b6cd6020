"""Thin REST adapters for conversations, sends, the device queue, acks, SSE and /dm/metrics."""

from __future__ import annotations

from channels.db import database_sync_to_async
from django.conf import settings
from django.http import JsonResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from chatsite.api import flags
from chatsite.api.errors import ApiError, json_error
from chatsite.api.flags import feature_permission
from chatsite.api.params import IntParam, parse_int_params
from chatsite.realtime import sse
from chatsite.realtime.relay import redis_status
from dm.presenters import sent_body
from dm.selectors import messages as message_selectors
from dm.selectors.devices import device_for_session, otpk_pool_summary
from dm.serializers.messages import (
    AckResultSerializer,
    AckSerializer,
    ConversationSerializer,
    FetchResultSerializer,
    OpenConversationSerializer,
    SendSerializer,
    SentSerializer,
    parse_send,
)
from dm.services import messages as message_services

DM_ENABLED = feature_permission("dm")


class ConversationListView(APIView):
    permission_classes = [DM_ENABLED, IsAuthenticated]

    @extend_schema(responses={200: ConversationSerializer(many=True)})
    def get(self, request):
        conversations = message_selectors.conversations_for_user(user_id=request.user.pk)
        data = ConversationSerializer(conversations, many=True, context={"user_id": request.user.pk}).data
        return Response({"conversations": data})

    @extend_schema(request=OpenConversationSerializer, responses={200: ConversationSerializer})
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

    @extend_schema(request=SendSerializer, responses={201: SentSerializer, 200: SentSerializer})
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
        responses={200: FetchResultSerializer},
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

    @extend_schema(request=AckSerializer, responses={200: AckResultSerializer})
    def post(self, request):
        body = AckSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        device = device_for_session(request.auth.device_id)
        return Response(message_services.deliveries_ack(device=device, **body.validated_data))


class DmMetricsView(APIView):
    """Seed 001's operator view (staff only): relay, OTPK pools, message stats, latency."""

    permission_classes = [IsAuthenticated, IsAdminUser]

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
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


async def dm_sse(request):
    """GET /dm/sse: the calling device's queue as Server-Sent Events (cursor: ?cursor= or
    Last-Event-ID), with heartbeats carrying relay_lag."""
    if request.method != "GET":
        return json_error("METHOD_NOT_ALLOWED")
    if not flags.is_enabled("dm"):
        return json_error("FEATURE_DISABLED", flags.FLAGS["dm"].disabled_detail)
    session = await sse.authenticate(request)
    if session is None:
        return json_error("UNAUTHENTICATED")
    try:
        await database_sync_to_async(device_for_session)(session.device_id)
    except ApiError as err:
        return JsonResponse(err.body(), status=err.status)
    return await sse.sse_response(request, session=session, feature="dm")
