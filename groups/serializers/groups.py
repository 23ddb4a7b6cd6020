"""Input shapes (shape only: the services check every rule) and output shapes (for OpenAPI) of
the group, membership and invite paths."""

from __future__ import annotations

from rest_framework import serializers

from chatsite.api.params import StrictIntegerField

MAX_INT32 = 2**31 - 1


# --- Requests ---------------------------------------------------------------------------------


class GroupCreateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=128, trim_whitespace=True)


class GroupUpdateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=128, trim_whitespace=True)


class GroupUserRefSerializer(serializers.Serializer):
    user_id = StrictIntegerField(min_value=1)


class GroupRoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["admin", "member"])


class InviteCreateSerializer(serializers.Serializer):
    max_uses = StrictIntegerField(min_value=1, max_value=MAX_INT32, required=False, allow_null=True)
    expires_in_seconds = StrictIntegerField(min_value=1, max_value=MAX_INT32, required=False, allow_null=True)


class JoinSerializer(serializers.Serializer):
    code = serializers.CharField(max_length=64)


# --- Responses --------------------------------------------------------------------------------


class GroupSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    title = serializers.CharField()
    group_epoch = serializers.IntegerField()
    max_participants = serializers.IntegerField()
    member_count = serializers.IntegerField()
    role = serializers.CharField(help_text="The caller's role: owner, admin or member.")
    created_at = serializers.DateTimeField()


class GroupListSerializer(serializers.Serializer):
    groups = GroupSerializer(many=True)


class MemberDeviceKeysSerializer(serializers.Serializer):
    device_id = serializers.UUIDField()
    identity_key = serializers.CharField(help_text="Curve25519 public key, unpadded base64.")
    signing_key = serializers.CharField(help_text="Ed25519 public key, unpadded base64.")


class MemberSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField()
    role = serializers.CharField(help_text="owner, admin or member.")
    joined_at = serializers.DateTimeField()
    devices = serializers.ListField(child=serializers.UUIDField(), help_text="Active device ids.")
    device_keys = MemberDeviceKeysSerializer(
        many=True,
        help_text="The active devices' public identity and signing keys (to check an envelope's "
        "Olm sender without claiming a one-time prekey).",
    )


class GroupDetailSerializer(GroupSerializer):
    members = MemberSerializer(many=True)


class BanSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    is_banned = serializers.BooleanField()
    banned_at = serializers.DateTimeField()


class InviteSerializer(serializers.Serializer):
    code = serializers.CharField()
    group_id = serializers.UUIDField()
    expires_at = serializers.DateTimeField()
    max_uses = serializers.IntegerField(allow_null=True)
    uses = serializers.IntegerField()
