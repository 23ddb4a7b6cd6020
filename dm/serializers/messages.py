"""Input and output shapes of conversations, sends, fetches and acks (REST and /ws frames)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from rest_framework import serializers

from chatsite.api.errors import ApiError
from chatsite.api.params import MAX_INT64, StrictIntegerField, is_json_int
from dm.services.messages import Envelope

_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")


_CLIENT_MESSAGE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_ENVELOPES = 64


def parse_send(data: Any, *, conversation_required: bool) -> dict[str, Any]:
    """Validate a send (REST body or `dm.send` frame): the one validation of this shape.

    Plain code rather than a DRF serializer because it runs on the gateway's hot path for every
    frame (a nested serializer costs about a millisecond per message there). Errors are the same
    400 VALIDATION_ERROR with field errors. SendSerializer below documents it for OpenAPI.
    """
    if not isinstance(data, dict):
        raise ApiError("VALIDATION_ERROR", errors={"non_field_errors": ["Expected a JSON object."]})
    errors: dict[str, Any] = {}
    conversation_id = data.get("conversation_id")
    if conversation_id is None:
        if conversation_required:
            errors["conversation_id"] = ["This field is required."]
    elif not is_json_int(conversation_id, 1, MAX_INT64):
        errors["conversation_id"] = ["A valid positive integer is required."]
    client_message_id = data.get("client_message_id")
    if not isinstance(client_message_id, str) or not _CLIENT_MESSAGE_ID.match(client_message_id):
        errors["client_message_id"] = ["1-64 characters of A-Z a-z 0-9 _ . : -"]
    raw = data.get("envelopes")
    envelopes: list[Envelope] = []
    if not isinstance(raw, list) or not raw:
        errors["envelopes"] = ["A non-empty list of {device_id, ciphertext, type} is required."]
    elif len(raw) > MAX_ENVELOPES:
        errors["envelopes"] = [f"At most {MAX_ENVELOPES} envelopes."]
    else:
        item_errors: list[dict[str, list[str]]] = []
        for item in raw:
            envelope, problems = _parse_envelope(item)
            item_errors.append(problems)
            if envelope is not None:
                envelopes.append(envelope)
        if any(item_errors):
            errors["envelopes"] = item_errors
    if errors:
        raise ApiError("VALIDATION_ERROR", errors=errors)
    return {
        "conversation_id": conversation_id,
        "client_message_id": client_message_id,
        "envelopes": envelopes,
    }


def _parse_envelope(item: Any) -> tuple[Envelope | None, dict[str, list[str]]]:
    if not isinstance(item, dict):
        return None, {"non_field_errors": ["Expected an object."]}
    problems: dict[str, list[str]] = {}
    try:
        device_id = str(uuid.UUID(str(item.get("device_id"))))
    except ValueError:
        problems["device_id"] = ["Must be a valid UUID."]
    ciphertext = item.get("ciphertext")
    # Only a cheap shape check: the server never decodes ciphertext. Size is the service's (413).
    if not isinstance(ciphertext, str) or not ciphertext or not _BASE64.match(ciphertext):
        problems["ciphertext"] = ["Must be non-empty base64."]
    message_type = item.get("type", 0)
    if not is_json_int(message_type, 0, 1):  # 0.0, false and "0" are not the integer 0
        problems["type"] = ["Must be 0 (pre-key) or 1 (normal), the Olm message type."]
    if problems:
        return None, problems
    return Envelope(device_id=device_id, ciphertext=ciphertext, message_type=message_type), {}


class EnvelopeSerializer(serializers.Serializer):
    """OpenAPI documentation of an envelope; validation is parse_send()."""

    device_id = serializers.UUIDField()
    ciphertext = serializers.CharField(help_text="Unpadded base64, opaque to the server")
    type = StrictIntegerField(min_value=0, max_value=1, default=0, help_text="Olm message type")


class SendSerializer(serializers.Serializer):
    """OpenAPI documentation of a send; validation is parse_send()."""

    conversation_id = StrictIntegerField(min_value=1, required=False, help_text="Only in dm.send frames")
    client_message_id = serializers.RegexField(r"^[A-Za-z0-9_.:-]{1,64}$")
    envelopes = EnvelopeSerializer(many=True, allow_empty=False, max_length=MAX_ENVELOPES)


class AckSerializer(serializers.Serializer):
    up_to = StrictIntegerField(min_value=0, required=False)
    message_ids = serializers.ListField(
        child=StrictIntegerField(min_value=1), required=False, max_length=1000
    )

    def validate(self, attrs):
        if ("up_to" in attrs) == ("message_ids" in attrs):
            raise serializers.ValidationError("Give exactly one of up_to or message_ids.")
        return attrs


class SyncSerializer(serializers.Serializer):
    since = StrictIntegerField(min_value=0)


class OpenConversationSerializer(serializers.Serializer):
    user_id = StrictIntegerField(min_value=1)


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


class ConversationListSerializer(serializers.Serializer):
    """OpenAPI documentation of GET /dm/conversations."""

    conversations = ConversationSerializer(many=True)


class SentSerializer(serializers.Serializer):
    message_id = serializers.IntegerField()
    conversation_id = serializers.IntegerField()
    client_message_id = serializers.CharField()
    created_at = serializers.DateTimeField()
    duplicate = serializers.BooleanField()
    recipients = serializers.IntegerField()


class MessageFrameSerializer(serializers.Serializer):
    """A queued message as a device receives it (REST fetch, `dm.message` frame, SSE event)."""

    type = serializers.CharField(default="dm.message")
    cursor = serializers.IntegerField()
    message_id = serializers.IntegerField()
    conversation_id = serializers.IntegerField()
    sender_user_id = serializers.IntegerField()
    sender_device_id = serializers.UUIDField(allow_null=True)
    client_message_id = serializers.CharField()
    message_type = serializers.IntegerField()
    ciphertext = serializers.CharField()
    created_at = serializers.DateTimeField()


class FetchResultSerializer(serializers.Serializer):
    messages = MessageFrameSerializer(many=True)
    cursor = serializers.IntegerField()
    has_more = serializers.BooleanField()


class AckResultSerializer(serializers.Serializer):
    acknowledged = serializers.IntegerField()
