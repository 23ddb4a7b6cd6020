"""Thin REST adapters for groups, membership, roles and invites (docs/groups.md).

Writes: groups.services.{groups,members,invites}; reads: groups.selectors.groups. The serializers
check the shape; the services check every rule (roles, bans, capacity, invites).
"""

from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from chatsite.api.flags import feature_permission
from chatsite.api.request import validated_body
from chatsite.api.schema import error_responses
from groups import presenters
from groups.selectors import groups as selectors
from groups.serializers import groups as s
from groups.services import groups as group_services
from groups.services import invites as invite_services
from groups.services import members as member_services


def _errors(*codes: str) -> dict:
    """Every group path answers 403 FEATURE_DISABLED when groups are off."""
    return error_responses("FEATURE_DISABLED", *codes)


class _GroupsView(APIView):
    permission_classes = [feature_permission("groups"), IsAuthenticated]


class GroupListView(_GroupsView):
    @extend_schema(operation_id="groups_list", responses={200: s.GroupListSerializer, **_errors()})
    def get(self, request):
        rows = selectors.groups_for_user(request.user.pk)
        return Response({"groups": [presenters.group_body(p.group, p.role) for p in rows]})

    @extend_schema(
        operation_id="groups_create",
        request=s.GroupCreateSerializer,
        responses={201: s.GroupSerializer, **_errors()},
        description="Create a group; the caller is its owner and first member.",
    )
    def post(self, request):
        body = validated_body(s.GroupCreateSerializer, request.data)
        group = member_services.group_create(user_id=request.user.pk, title=body["title"])
        return Response(presenters.group_body(group, "owner"), status=status.HTTP_201_CREATED)


class GroupDetailView(_GroupsView):
    @extend_schema(
        operation_id="groups_retrieve",
        responses={200: s.GroupDetailSerializer, **_errors("NOT_MEMBER", "NOT_FOUND")},
        description="The group and its current members with their active device ids.",
    )
    def get(self, request, group_id):
        detail = selectors.group_detail(group_id=group_id, user_id=request.user.pk)
        return Response(presenters.group_detail_body(detail))

    @extend_schema(
        operation_id="groups_update",
        request=s.GroupUpdateSerializer,
        responses={200: s.GroupSerializer, **_errors("NOT_MEMBER", "PERMISSION_DENIED", "NOT_FOUND")},
        description="Rename the group (admins and the owner).",
    )
    def patch(self, request, group_id):
        body = validated_body(s.GroupUpdateSerializer, request.data)
        group_services.group_rename(actor_id=request.user.pk, group_id=group_id, title=body["title"])
        group, role = selectors.group_for_member(group_id=group_id, user_id=request.user.pk)
        return Response(presenters.group_body(group, role))


class MemberListView(_GroupsView):
    @extend_schema(
        operation_id="groups_members_add",
        request=s.GroupUserRefSerializer,
        responses={
            201: OpenApiResponse(s.MemberSerializer, description="Added."),
            200: OpenApiResponse(s.MemberSerializer, description="Already a member: unchanged."),
            **_errors("NOT_MEMBER", "PERMISSION_DENIED", "BANNED", "NOT_FOUND", "GROUP_FULL"),
        },
        description="An admin or the owner adds a user as a member.",
    )
    def post(self, request, group_id):
        body = validated_body(s.GroupUserRefSerializer, request.data)
        participant, created = member_services.member_add(
            actor_id=request.user.pk, group_id=group_id, user_id=body["user_id"]
        )
        (member,) = selectors.member_views(group_id, [participant.user_id])
        return Response(
            presenters.member_body(member), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class MemberView(_GroupsView):
    @extend_schema(
        operation_id="groups_members_remove",
        responses={
            204: OpenApiResponse(description="Removed."),
            **_errors("BAD_REQUEST", "NOT_MEMBER", "PERMISSION_DENIED", "NOT_FOUND", "OWNER_REQUIRED"),
        },
        description="Admins remove members, the owner admins too; nobody removes the owner. "
        "Removing yourself is leaving.",
    )
    def delete(self, request, group_id, user_id: int):
        member_services.member_remove(actor_id=request.user.pk, group_id=group_id, user_id=user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        operation_id="groups_members_set_role",
        request=s.GroupRoleSerializer,
        responses={
            200: s.MemberSerializer,
            **_errors("NOT_MEMBER", "PERMISSION_DENIED", "NOT_FOUND", "OWNER_REQUIRED"),
        },
        description="The owner makes a member an admin, or an admin a member.",
    )
    def patch(self, request, group_id, user_id: int):
        body = validated_body(s.GroupRoleSerializer, request.data)
        member_services.member_set_role(
            actor_id=request.user.pk, group_id=group_id, user_id=user_id, role=body["role"]
        )
        (member,) = selectors.member_views(group_id, [user_id])
        return Response(presenters.member_body(member))


class BanView(_GroupsView):
    @extend_schema(
        operation_id="groups_bans_create",
        request=s.GroupUserRefSerializer,
        responses={
            201: s.BanSerializer,
            **_errors("BAD_REQUEST", "NOT_MEMBER", "PERMISSION_DENIED", "NOT_FOUND"),
        },
        description="Ban a user: a member is removed and cannot come back by add or invite.",
    )
    def post(self, request, group_id):
        body = validated_body(s.GroupUserRefSerializer, request.data)
        banned = member_services.member_ban(
            actor_id=request.user.pk, group_id=group_id, user_id=body["user_id"]
        )
        return Response(presenters.ban_body(banned), status=status.HTTP_201_CREATED)


class LeaveView(_GroupsView):
    @extend_schema(
        operation_id="groups_leave",
        request=None,
        responses={
            204: OpenApiResponse(description="Left."),
            **_errors("NOT_MEMBER", "NOT_FOUND", "OWNER_REQUIRED"),
        },
        description="Leave the group; the owner must transfer ownership first (409 OWNER_REQUIRED).",
    )
    def post(self, request, group_id):
        member_services.member_leave(user_id=request.user.pk, group_id=group_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TransferOwnershipView(_GroupsView):
    @extend_schema(
        operation_id="groups_transfer_ownership",
        request=s.GroupUserRefSerializer,
        responses={
            200: s.GroupSerializer,
            **_errors("BAD_REQUEST", "NOT_MEMBER", "PERMISSION_DENIED", "NOT_FOUND"),
        },
        description="The owner hands the group to a current member and becomes an admin.",
    )
    def post(self, request, group_id):
        body = validated_body(s.GroupUserRefSerializer, request.data)
        member_services.ownership_transfer(
            actor_id=request.user.pk, group_id=group_id, user_id=body["user_id"]
        )
        group, role = selectors.group_for_member(group_id=group_id, user_id=request.user.pk)
        return Response(presenters.group_body(group, role))


class InviteView(_GroupsView):
    @extend_schema(
        operation_id="groups_invites_create",
        request=s.InviteCreateSerializer,
        responses={
            201: s.InviteSerializer,
            **_errors("NOT_MEMBER", "PERMISSION_DENIED", "NOT_FOUND", "RATE_LIMITED"),
        },
        description="An admin or the owner creates an invite code (default lifetime "
        "GROUP_INVITE_TTL_HOURS, also the maximum; max_uses optional).",
    )
    def post(self, request, group_id):
        body = validated_body(s.InviteCreateSerializer, request.data)
        invite = invite_services.invite_create(
            user_id=request.user.pk,
            group_id=group_id,
            max_uses=body.get("max_uses"),
            expires_in_seconds=body.get("expires_in_seconds"),
        )
        return Response(presenters.invite_body(invite), status=status.HTTP_201_CREATED)


class JoinView(_GroupsView):
    @extend_schema(
        operation_id="groups_join",
        request=s.JoinSerializer,
        responses={
            201: OpenApiResponse(s.GroupSerializer, description="Joined."),
            200: OpenApiResponse(s.GroupSerializer, description="Already a member: no use consumed."),
            **_errors("BANNED", "NOT_FOUND", "GROUP_FULL", "MAX_USES", "GONE", "RATE_LIMITED"),
        },
        description="Redeem an invite code.",
    )
    def post(self, request):
        body = validated_body(s.JoinSerializer, request.data)
        result = invite_services.invite_redeem(code=body["code"], user_id=request.user.pk)
        return Response(
            presenters.group_body(result.group, result.participant.role),
            status=status.HTTP_201_CREATED if result.joined else status.HTTP_200_OK,
        )


urlpatterns = [
    path("groups", GroupListView.as_view(), name="groups"),
    path("groups/join", JoinView.as_view(), name="groups-join"),
    path("groups/<uuid:group_id>", GroupDetailView.as_view(), name="group"),
    path("groups/<uuid:group_id>/members", MemberListView.as_view(), name="group-members"),
    path("groups/<uuid:group_id>/members/<int:user_id>", MemberView.as_view(), name="group-member"),
    path("groups/<uuid:group_id>/bans", BanView.as_view(), name="group-bans"),
    path("groups/<uuid:group_id>/leave", LeaveView.as_view(), name="group-leave"),
    path("groups/<uuid:group_id>/transfer-ownership", TransferOwnershipView.as_view(), name="group-transfer"),
    path("groups/<uuid:group_id>/invites", InviteView.as_view(), name="group-invites"),
]
