"""Input shapes (shape only: the services check every rule) and output shapes (for OpenAPI) of
the status paths."""

from __future__ import annotations

from rest_framework import serializers

from chatsite.api.params import StrictIntegerField
from status.models import AudienceMode

MAX_CIPHERTEXT = 256 * 1024
MAX_AUDIENCE = 10_000


class AudienceSerializer(serializers.Serializer):
    audience_mode = serializers.ChoiceField(choices=AudienceMode.values)
    audience = serializers.ListField(
        child=StrictIntegerField(min_value=1), required=False, default=list, max_length=MAX_AUDIENCE
    )


class PostCreateSerializer(AudienceSerializer):
    ciphertext = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=MAX_CIPHERTEXT
    )
    media_ref = serializers.CharField(required=False, allow_blank=True, default="", max_length=512)
    media_meta = serializers.DictField(required=False, default=dict)

    def validate(self, attrs):
        if bool(attrs.get("ciphertext")) == bool(attrs.get("media_ref")):
            raise serializers.ValidationError("Send either ciphertext or media_ref.")
        return attrs


class FeedQuerySerializer(serializers.Serializer):
    cursor = serializers.CharField(required=False, max_length=256)
    limit = StrictIntegerField(required=False, min_value=1, max_value=100, default=20)


# --- Responses --------------------------------------------------------------------------------


class PostCreatedSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    expires_at = serializers.DateTimeField()
    post_epoch = serializers.IntegerField()


class PostSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    owner_user_id = serializers.IntegerField()
    ciphertext = serializers.CharField(allow_blank=True)
    media_ref = serializers.CharField(allow_blank=True)
    media_meta = serializers.DictField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    post_epoch = serializers.IntegerField()
    seen = serializers.BooleanField()
    audience_mode = serializers.ChoiceField(
        choices=AudienceMode.values, required=False, help_text="Only to the owner"
    )
    audience = serializers.ListField(
        child=serializers.IntegerField(), required=False, help_text="Only to the owner"
    )


class FeedGroupSerializer(serializers.Serializer):
    owner_user_id = serializers.IntegerField()
    latest_at = serializers.DateTimeField()
    all_seen = serializers.BooleanField()
    posts = PostSerializer(many=True)


class FeedSerializer(serializers.Serializer):
    groups = FeedGroupSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)


class AudienceUpdatedSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    post_epoch = serializers.IntegerField()
    audience_mode = serializers.ChoiceField(choices=AudienceMode.values)
    audience = serializers.ListField(child=serializers.IntegerField())


class ViewRecordedSerializer(serializers.Serializer):
    post_id = serializers.UUIDField()
    viewed_at = serializers.DateTimeField()


class ViewSerializer(serializers.Serializer):
    viewer_user_id = serializers.IntegerField()
    viewed_at = serializers.DateTimeField()


class ViewListSerializer(serializers.Serializer):
    receipts_enabled = serializers.BooleanField(
        help_text="False when the owner turned read receipts off: then no receipts are shown"
    )
    views = ViewSerializer(many=True)
