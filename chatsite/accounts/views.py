"""Thin REST adapters over accounts.services / selectors."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from chatsite.accounts import selectors, services, tickets
from chatsite.accounts.serializers import (
    BlockListSerializer,
    BlockSerializer,
    ContactListSerializer,
    ContactSerializer,
    CredentialsSerializer,
    LoginResultSerializer,
    LoginSerializer,
    RegisteredSerializer,
    SessionListSerializer,
    SessionSerializer,
    UserLookupResultSerializer,
    UsernameLookupSerializer,
    UserRefSerializer,
)
from chatsite.api.request import client_ip
from chatsite.api.schema import error_responses


class RegisterView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(
        request=CredentialsSerializer,
        responses={201: RegisteredSerializer, **error_responses("CONFLICT", "RATE_LIMITED")},
    )
    def post(self, request):
        data = CredentialsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.user_register(**data.validated_data, ip=client_ip(request))
        return Response(RegisteredSerializer(user).data, status=status.HTTP_201_CREATED)


class LoginView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(
        request=LoginSerializer,
        responses={
            200: LoginResultSerializer,
            **error_responses("INVALID_CREDENTIALS", "ACCOUNT_DISABLED", "RATE_LIMITED"),
        },
    )
    def post(self, request):
        data = LoginSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        session, token = services.session_login(
            **data.validated_data, ip=client_ip(request), user_agent=request.META.get("HTTP_USER_AGENT", "")
        )
        return Response(
            {
                "token": token,
                "expires_at": session.expires_at,
                "user_id": session.user_id,
                "session_id": session.pk,
            }
        )


class LogoutView(APIView):
    @extend_schema(request=None, responses={204: None})
    def post(self, request):
        services.session_logout(session=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SessionListView(APIView):
    @extend_schema(responses={200: SessionListSerializer})
    def get(self, request):
        sessions = selectors.sessions_for_user(user=request.user)
        data = SessionSerializer(sessions, many=True, context={"current_session": request.auth}).data
        return Response({"sessions": data})


class StreamTicketView(APIView):
    """A single-use ticket for `?ticket=` on /ws and /dm/sse, so no bearer token goes in a URL."""

    @extend_schema(
        request=None,
        responses={
            201: inline_serializer(
                "StreamTicket", {"ticket": serializers.CharField(), "expires_at": serializers.DateTimeField()}
            ),
            **error_responses("SERVICE_UNAVAILABLE"),
        },
    )
    def post(self, request):
        ticket, expires_at = tickets.stream_ticket_issue(session=request.auth)
        return Response(
            {"ticket": ticket, "expires_at": expires_at},
            status=status.HTTP_201_CREATED,
            headers={"Cache-Control": "no-store"},  # a credential: no cache may keep it
        )


class SessionDetailView(APIView):
    @extend_schema(responses={204: None, **error_responses("NOT_FOUND")})
    def delete(self, request, session_id):
        services.session_revoke(user=request.user, session_id=session_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class UserLookupView(APIView):
    """A user's id from their exact username, to start a conversation or add a contact."""

    @extend_schema(
        operation_id="users_lookup",
        parameters=[UsernameLookupSerializer],
        responses={
            200: UserLookupResultSerializer,
            **error_responses("VALIDATION_ERROR", "NOT_FOUND", "RATE_LIMITED"),
        },
        description="Exact match after log-in's normalisation (NFKC, case-folded); no prefix or "
        "partial search. 404 NOT_FOUND alike for unknown and disabled accounts. Each look-up counts "
        "against CONTACT_ADDS_PER_USER_PER_HOUR, shared with /contacts, /blocks and new "
        "conversations (429 RATE_LIMITED past it).",
    )
    def get(self, request):
        data = UsernameLookupSerializer(data=request.query_params)
        data.is_valid(raise_exception=True)
        user = services.user_lookup(owner=request.user, username=data.validated_data["username"])
        return Response(UserLookupResultSerializer(user).data)


class ContactListView(APIView):
    @extend_schema(responses={200: ContactListSerializer})
    def get(self, request):
        contacts = selectors.contacts_for_user(user=request.user)
        return Response({"contacts": ContactSerializer(contacts, many=True).data})

    @extend_schema(
        request=UserRefSerializer,
        responses={201: ContactSerializer, **error_responses("BAD_REQUEST", "NOT_FOUND", "RATE_LIMITED")},
    )
    def post(self, request):
        data = UserRefSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        contact = services.contact_add(owner=request.user, user_id=data.validated_data["user_id"])
        return Response(ContactSerializer(contact).data, status=status.HTTP_201_CREATED)


class ContactDetailView(APIView):
    @extend_schema(responses={204: None, **error_responses("NOT_FOUND")})
    def delete(self, request, user_id: int):
        services.contact_remove(owner=request.user, user_id=user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class BlockListView(APIView):
    @extend_schema(responses={200: BlockListSerializer})
    def get(self, request):
        return Response(
            {"blocks": BlockSerializer(selectors.blocked_users(user=request.user), many=True).data}
        )

    @extend_schema(
        request=UserRefSerializer,
        responses={201: BlockSerializer, **error_responses("BAD_REQUEST", "NOT_FOUND", "RATE_LIMITED")},
    )
    def post(self, request):
        data = UserRefSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        block = services.block_add(blocker=request.user, user_id=data.validated_data["user_id"])
        return Response(BlockSerializer(block).data, status=status.HTTP_201_CREATED)


class BlockDetailView(APIView):
    @extend_schema(responses={204: None, **error_responses("NOT_FOUND")})
    def delete(self, request, user_id: int):
        services.block_remove(blocker=request.user, user_id=user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
