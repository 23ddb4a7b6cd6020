"""Request shapes (checked here) and response shapes (for OpenAPI) of the presence paths."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from presence.models import AUDIENCES


@extend_schema_field({"type": "string", "enum": list(AUDIENCES), "description": "Who may see it."})
class AudienceField(serializers.Field):
    """everyone | contacts | nobody (one inline enum in OpenAPI for both settings)."""

    default_error_messages = {"invalid_choice": '"{input}" is not a valid choice.'}

    def to_internal_value(self, data):
        if not isinstance(data, str) or data not in AUDIENCES:
            self.fail("invalid_choice", input=data)
        return data

    def to_representation(self, value):
        return value


class StrictBooleanField(serializers.BooleanField):
    """A JSON true/false only (DRF's BooleanField also takes "yes", 1, "on"...)."""

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class PrivacySerializer(serializers.Serializer):
    share_last_seen = AudienceField()
    share_online = AudienceField()
    read_receipts = serializers.BooleanField()


class PrivacyPatchSerializer(serializers.Serializer):
    share_last_seen = AudienceField(required=False)
    share_online = AudienceField(required=False)
    read_receipts = StrictBooleanField(required=False)

    def validate(self, attrs):
        unknown = set(self.initial_data) - set(self.fields) if isinstance(self.initial_data, dict) else set()
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in sorted(unknown)})
        if not attrs:
            raise serializers.ValidationError(
                "Give at least one of share_last_seen, share_online, read_receipts."
            )
        return attrs


class PresenceEntrySerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    online = serializers.BooleanField(allow_null=True, help_text="null when the user's privacy hides it")
    last_seen_at = serializers.DateTimeField(allow_null=True, help_text="null when privacy hides it")


class PresenceListSerializer(serializers.Serializer):
    presence = PresenceEntrySerializer(many=True)
