"""Thin REST adapters for presence (docs/presence.md): GET /status/presence and
GET|PATCH /status/presence/privacy."""

from __future__ import annotations

from django.conf import settings
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from chatsite.api.errors import ApiError
from chatsite.api.flags import feature_permission
from chatsite.api.params import parse_int
from chatsite.api.schema import error_responses
from presence import selectors, services
from presence import serializers as s


def _errors(*codes: str) -> dict:
    """Every presence path answers 403 FEATURE_DISABLED when presence is off."""
    return error_responses("FEATURE_DISABLED", *codes)


def _user_ids(raw: str | None) -> list[int]:
    if not raw:
        raise ApiError("VALIDATION_ERROR", errors={"user_ids": ["Give user ids, comma-separated."]})
    parts = raw.split(",")
    if len(parts) > settings.PRESENCE_MAX_USER_IDS:
        raise ApiError(
            "VALIDATION_ERROR",
            errors={"user_ids": [f"At most {settings.PRESENCE_MAX_USER_IDS} ids."]},
        )
    return [parse_int(p, field="user_ids", minimum=1) for p in parts]


class _PresenceView(APIView):
    permission_classes = [feature_permission("presence"), IsAuthenticated]


class PresenceView(_PresenceView):
    @extend_schema(
        operation_id="presence_list",
        parameters=[
            OpenApiParameter(
                "user_ids",
                str,
                required=True,
                description="Comma-separated user ids (at most PRESENCE_MAX_USER_IDS, default 200).",
            )
        ],
        responses={200: s.PresenceListSerializer, **_errors("VALIDATION_ERROR")},
        description=(
            "Online state and last seen of existing users among user_ids, as each one's privacy "
            "settings allow the caller to see them (a hidden field is null). Blocked users (either "
            "direction) see nothing; a caller whose share_last_seen is `nobody` sees no one's last seen."
        ),
    )
    def get(self, request):
        ids = _user_ids(request.query_params.get("user_ids"))
        return Response({"presence": selectors.presence_for(viewer_id=request.user.pk, user_ids=ids)})


class PrivacyView(_PresenceView):
    @extend_schema(operation_id="presence_privacy_get", responses={200: s.PrivacySerializer, **_errors()})
    def get(self, request):
        return Response(selectors.privacy_of(request.user.pk))

    @extend_schema(
        operation_id="presence_privacy_update",
        request=s.PrivacyPatchSerializer,
        responses={200: s.PrivacySerializer, **_errors("VALIDATION_ERROR", "BAD_REQUEST")},
        description="Change any of share_last_seen, share_online (everyone/contacts/nobody), read_receipts.",
    )
    def patch(self, request):
        body = s.PrivacyPatchSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return Response(services.update_privacy(user_id=request.user.pk, changes=dict(body.validated_data)))


urlpatterns = [
    path("status/presence", PresenceView.as_view(), name="presence"),
    path("status/presence/privacy", PrivacyView.as_view(), name="presence-privacy"),
]
