"""Input and output shapes of conversations, sends, fetches and acks (REST and /ws frames)."""

from __future__ import annotations

import re

from rest_framework import serializers

from dm.services.messages import Envelope

_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")


class EnvelopeSerializer(serializers.Serializer):
    device_id = serializers.UUIDField()
    ciphertext = serializers.CharField(trim_whitespace=False)
    # Olm message type as vodozemac's to_parts() gives it: 0 pre-key, 1 normal.
    type = serializers.IntegerField(min_value=0, max_value=1, default=0, required=False)

    def validate_ciphertext(self, value: str) -> str:
        # Only a cheap shape check: the server never decodes ciphertext. Size is checked by the
        # service (413), so no max_length here.
        if not value or not _BASE64.match(value):
            raise serializers.ValidationError("Must be non-empty base64.")
        return value

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        return Envelope(
            device_id=str(value["device_id"]), ciphertext=value["ciphertext"], message_type=value["type"]
        )


class SendSerializer(serializers.Serializer):
    conversation_id = serializers.IntegerField(min_value=1, required=False)
    client_message_id = serializers.RegexField(r"^[A-Za-z0-9_.:-]{1,64}$")
    envelopes = EnvelopeSerializer(many=True, allow_empty=False, max_length=64)


class AckSerializer(serializers.Serializer):
    up_to = serializers.IntegerField(min_value=0, required=False)
    message_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False, max_length=1000
    )

    def validate(self, attrs):
        if ("up_to" in attrs) == ("message_ids" in attrs):
            raise serializers.ValidationError("Give exactly one of up_to or message_ids.")
        return attrs


class SyncSerializer(serializers.Serializer):
    since = serializers.IntegerField(min_value=0)


class OpenConversationSerializer(serializers.Serializer):
    user_id = serializers.IntegerField(min_value=1)


class ConversationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    user_id = serializers.SerializerMethodField()
    username = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    last_message_at = serializers.DateTimeField(allow_null=True, required=False)

    def _other(self, obj):
        me = self.context["user_id"]
        return obj.user_high if obj.user_low_id == me else obj.user_low

    def get_user_id(self, obj) -> int:
        return self._other(obj).pk

    def get_username(self, obj) -> str:
        return self._other(obj).username


class SentSerializer(serializers.Serializer):
    message_id = serializers.IntegerField()
    conversation_id = serializers.IntegerField()
    client_message_id = serializers.CharField()
    created_at = serializers.DateTimeField()
    duplicate = serializers.BooleanField()
    recipients = serializers.IntegerField()
