"""Thin REST adapters for status posts (docs/status.md). Writes: status.services.posts; reads:
status.selectors.posts. Outside a post's audience every path answers 404 NOT_FOUND."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from chatsite.api.flags import feature_permission
from chatsite.api.params import IntParam, parse_int_params
from chatsite.api.request import validated_body
from chatsite.api.schema import error_responses
from status import presenters
from status.selectors import posts as selectors
from status.serializers import posts as s
from status.services import posts as services

# The feed is paginated by authors; a page holds at most this many.
FEED_MAX_LIMIT = 100


def _errors(*codes: str) -> dict:
    """Every status path answers 403 FEATURE_DISABLED when status is off."""
    return error_responses("FEATURE_DISABLED", *codes)


class _StatusView(APIView):
    permission_classes = [feature_permission("status"), IsAuthenticated]


class PostListView(_StatusView):
    @extend_schema(
        operation_id="status_posts_create",
        request=s.PostCreateSerializer,
        responses={201: s.PostCreatedSerializer, **_errors("VALIDATION_ERROR")},
        description="Post a status (opaque ciphertext, or a media reference plus metadata) to an "
        "audience of your contacts; it expires STATUS_TTL_HOURS after creation. The audience is "
        "fixed now: contacts added later do not see it. Users outside your contacts, and anyone "
        "on either side of a block with you, are left out silently.",
    )
    def post(self, request):
        body = validated_body(s.PostCreateSerializer, request.data)
        post = services.post_create(
            user_id=request.user.pk,
            audience_mode=body["audience_mode"],
            audience=body["audience"],
            ciphertext=body["ciphertext"],
            media_ref=body["media_ref"],
            media_meta=body["media_meta"],
        )
        return Response(presenters.post_created_body(post), status=status.HTTP_201_CREATED)


class FeedView(_StatusView):
    @extend_schema(
        operation_id="status_feed",
        parameters=[OpenApiParameter("cursor", str), OpenApiParameter("limit", int)],
        responses={200: s.FeedSerializer, **_errors("VALIDATION_ERROR")},
        description="Live posts you are in the audience of, grouped by author (the author with "
        "the newest post first), each with its seen state; `limit` authors a page, then "
        "`next_cursor`.",
    )
    def get(self, request):
        params = parse_int_params(
            request.query_params, limit=IntParam(default=20, minimum=1, maximum=FEED_MAX_LIMIT)
        )
        page = selectors.feed(
            user_id=request.user.pk, limit=params["limit"], cursor=request.query_params.get("cursor") or None
        )
        return Response(presenters.feed_body(page))


class PostDetailView(_StatusView):
    @extend_schema(
        operation_id="status_posts_retrieve",
        responses={200: s.PostSerializer, **_errors("NOT_FOUND", "GONE")},
        description="One post; the owner also gets its audience. 410 once expired.",
    )
    def get(self, request, post_id):
        post = selectors.visible_post(post_id=post_id, user_id=request.user.pk)
        if post.owner_id == request.user.pk:
            body = presenters.post_body(post, seen=True, audience=selectors.audience_ids(post.pk))
        else:
            body = presenters.post_body(post, seen=selectors.viewed_by(post.pk, request.user.pk))
        return Response(body)

    @extend_schema(
        operation_id="status_posts_delete",
        responses={
            204: OpenApiResponse(description="Deleted with its audience and views."),
            **_errors("NOT_FOUND", "GONE"),
        },
        description="The owner deletes a post before it expires.",
    )
    def delete(self, request, post_id):
        services.post_delete(user_id=request.user.pk, post_id=post_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AudienceView(_StatusView):
    @extend_schema(
        operation_id="status_posts_audience_update",
        request=s.AudienceSerializer,
        responses={200: s.AudienceUpdatedSerializer, **_errors("VALIDATION_ERROR", "NOT_FOUND", "GONE")},
        description="Replace the audience (same rules as at post time) and bump post_epoch; the "
        "owner's streams and the new audience get `status.rekey`.",
    )
    def patch(self, request, post_id):
        body = validated_body(s.AudienceSerializer, request.data)
        post, _added, _removed = services.audience_update(
            user_id=request.user.pk,
            post_id=post_id,
            audience_mode=body["audience_mode"],
            audience=body["audience"],
        )
        return Response(
            {
                "id": str(post.pk),
                "post_epoch": post.post_epoch,
                "audience_mode": post.audience_mode,
                "audience": selectors.audience_ids(post.pk),
            }
        )


class ViewsView(_StatusView):
    @extend_schema(
        operation_id="status_posts_views_record",
        request=None,
        responses={
            201: s.ViewRecordedSerializer,
            200: s.ViewRecordedSerializer,
            **_errors("NOT_FOUND", "GONE"),
        },
        description="Record that you viewed the post: once per viewer (201 the first time, 200 "
        "after, with the first view's time). The owner's own views are not recorded (200).",
    )
    def post(self, request, post_id):
        viewed_at, created = services.view_record(user_id=request.user.pk, post_id=post_id)
        return Response(
            {"post_id": str(post_id), "viewed_at": viewed_at},
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(
        operation_id="status_posts_views_list",
        responses={200: s.ViewListSerializer, **_errors("NOT_FOUND", "GONE")},
        description="Owner only: who viewed the post, limited to viewers whose read receipts are "
        "on; empty (receipts_enabled false) when your own read receipts are off.",
    )
    def get(self, request, post_id):
        page = selectors.post_views(post_id=post_id, user_id=request.user.pk)
        return Response(
            {
                "receipts_enabled": page.receipts_enabled,
                "views": [presenters.view_body(v) for v in page.views],
            }
        )


urlpatterns = [
    path("status/posts", PostListView.as_view(), name="status-posts"),
    path("status/feed", FeedView.as_view(), name="status-feed"),
    path("status/posts/<uuid:post_id>", PostDetailView.as_view(), name="status-post"),
    path("status/posts/<uuid:post_id>/audience", AudienceView.as_view(), name="status-post-audience"),
    path("status/posts/<uuid:post_id>/views", ViewsView.as_view(), name="status-post-views"),
]
