"""Input and output shapes of sender keys, group messages and acks (REST and /ws frames).
Input serializers validate; output serializers document (responses are built by
groups.presenters_messages)."""

from __future__ import annotations

from rest_framework import serializers

from chatsite.api.params import StrictIntegerField

CLIENT_MESSAGE_ID = r"^[A-Za-z0-9_.:-]{1,64}$"
SENDER_KEY_ID = r"^[A-Za-z0-9_.:+/=-]{1,64}$"


class GroupSendSerializer(serializers.Serializer):
    group_epoch = StrictIntegerField(min_value=1)
    sender_key_id = serializers.RegexField(SENDER_KEY_ID)
    client_message_id = serializers.RegexField(CLIENT_MESSAGE_ID)
    ciphertext = serializers.CharField(help_text="Megolm ciphertext, base64, opaque to the server")


class GroupFrameSendSerializer(GroupSendSerializer):
    group_id = serializers.UUIDField()


class GroupEnvelopeInSerializer(serializers.Serializer):
    device_id = serializers.UUIDField()
    ciphertext = serializers.CharField(help_text="Olm ciphertext of the sender key, base64")
    message_type = StrictIntegerField(min_value=0, max_value=1, default=0, help_text="Olm message type")


class GroupDistributeSerializer(serializers.Serializer):
    group_epoch = StrictIntegerField(min_value=1)
    sender_key_id = serializers.RegexField(SENDER_KEY_ID)
    client_message_id = serializers.RegexField(CLIENT_MESSAGE_ID, required=False)
    envelopes = GroupEnvelopeInSerializer(many=True, allow_empty=True, max_length=1024)


class GroupAckSerializer(serializers.Serializer):
    seq = StrictIntegerField(min_value=0)


class GroupFrameAckSerializer(GroupAckSerializer):
    group_id = serializers.UUIDField()


class GroupFrameSyncSerializer(serializers.Serializer):
    group_id = serializers.UUIDField()
    since = StrictIntegerField(min_value=0)


class GroupSentSerializer(serializers.Serializer):
    message_id = serializers.IntegerField()
    group_id = serializers.UUIDField()
    seq = serializers.IntegerField()
    group_epoch = serializers.IntegerField()
    proto = serializers.IntegerField(help_text="1 message, 11 sender-key distribution")
    client_message_id = serializers.CharField()
    created_at = serializers.DateTimeField()
    duplicate = serializers.BooleanField()
    recipients = serializers.IntegerField(help_text="Device frames published (0 for a duplicate)")


class GroupEnvelopeOutSerializer(serializers.Serializer):
    message_type = serializers.IntegerField()
    ciphertext = serializers.CharField()


class GroupMessageFrameSerializer(serializers.Serializer):
    """A group message as a device reads it (REST page item, `group.message` frame)."""

    type = serializers.CharField(default="group.message")
    group_id = serializers.UUIDField()
    seq = serializers.IntegerField()
    message_id = serializers.IntegerField()
    proto = serializers.IntegerField()
    group_epoch = serializers.IntegerField()
    sender_user_id = serializers.IntegerField(
        allow_null=True, help_text="null once the sender's account is deleted"
    )
    sender_device_id = serializers.UUIDField(allow_null=True)
    sender_key_id = serializers.CharField()
    client_message_id = serializers.CharField()
    ciphertext = serializers.CharField(
        allow_blank=True, help_text="Proto 1: Megolm ciphertext; proto 11: empty"
    )
    envelope = GroupEnvelopeOutSerializer(
        allow_null=True, help_text="Proto 11: this device's envelope; else null"
    )
    created_at = serializers.DateTimeField()


class GroupMessagePageSerializer(serializers.Serializer):
    messages = GroupMessageFrameSerializer(many=True)
    cursor = serializers.IntegerField()
    has_more = serializers.BooleanField()


class GroupAckResultSerializer(serializers.Serializer):
    group_id = serializers.UUIDField()
    acked_seq = serializers.IntegerField()
    envelopes_acked = serializers.IntegerField()


class GroupEnvelopeLedgerSerializer(serializers.Serializer):
    device_id = serializers.UUIDField()
    recipient_user_id = serializers.IntegerField()
    acked_at = serializers.DateTimeField(allow_null=True)


class GroupSenderKeySerializer(serializers.Serializer):
    sender_key_id = serializers.CharField()
    sender_device_id = serializers.UUIDField()
    group_epoch = serializers.IntegerField()
    message_id = serializers.IntegerField()
    rotated_at = serializers.DateTimeField()
    envelopes = GroupEnvelopeLedgerSerializer(many=True)


class GroupSenderKeyListSerializer(serializers.Serializer):
    group_epoch = serializers.IntegerField(help_text="The group's current epoch")
    sender_keys = GroupSenderKeySerializer(many=True)


class GroupMetricsTotalsSerializer(serializers.Serializer):
    groups = serializers.IntegerField()
    participants = serializers.IntegerField()
    messages = serializers.IntegerField()
    sender_key_distributions = serializers.IntegerField()


class GroupEpochChurnSerializer(serializers.Serializer):
    group_id = serializers.UUIDField()
    bumps = serializers.IntegerField()


class GroupMetricsSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    redis_status = serializers.CharField()
    totals = GroupMetricsTotalsSerializer()
    groups_near_capacity = serializers.IntegerField()
    near_capacity_threshold = serializers.IntegerField()
    epoch_bumps_last_hour = serializers.IntegerField()
    epoch_churn_last_hour = GroupEpochChurnSerializer(
        many=True, help_text="The 10 groups whose epoch moved most in the last hour (alert above 10)."
    )
    invite_redemptions_last_hour = serializers.IntegerField()
    unacked_envelopes_older_than_5m = serializers.IntegerField()
