"""Input and output shapes of the E2EE device and bundle endpoints.

Shape only: types and presence, for parsing and the OpenAPI schema. The rules on keys (base64,
sizes, key ids, per-upload caps, signatures) are checked once, by the services through `dm.keys`,
so REST and WebSocket callers get the same errors.

Keys and signatures are strings: standard base64, unpadded as vodozemac prints them (padded input
is accepted and stored unpadded). Public keys are 32 bytes (43 characters), signatures 64 bytes
(86 characters).
"""

from __future__ import annotations

from rest_framework import serializers


def _key_field(**kwargs) -> serializers.CharField:
    # Untrimmed: surrounding whitespace is not base64, and the service says so.
    kwargs.setdefault("help_text", "Standard base64 of 32 bytes, unpadded as vodozemac prints it.")
    return serializers.CharField(trim_whitespace=False, **kwargs)


def _key_id_field() -> serializers.CharField:
    return serializers.CharField(
        help_text="The client's key id (1 to 64 characters without spaces), e.g. vodozemac's 11-character id."
    )


class OneTimeKeySerializer(serializers.Serializer):
    key_id = _key_id_field()
    public_key = _key_field()


class SignedKeySerializer(serializers.Serializer):
    key_id = _key_id_field()
    public_key = _key_field()
    signature = _key_field(
        help_text="Ed25519 signature by the signing key over the "
        "raw 32 bytes of public_key, standard base64 of 64 bytes, unpadded.",
    )


class DeviceRegisterSerializer(serializers.Serializer):
    device_name = serializers.CharField(
        required=False, help_text="1 to 64 characters. Also accepted as `name`."
    )
    name = serializers.CharField(required=False, write_only=True)
    identity_key = _key_field(help_text="Curve25519 identity key (vodozemac `curve25519_key`).")
    signing_key = _key_field(help_text="Ed25519 signing key (vodozemac `ed25519_key`).")
    signed_prekey = SignedKeySerializer()
    one_time_prekeys = OneTimeKeySerializer(
        many=True, required=False, help_text="At most E2EE_MAX_PREKEYS_PER_UPLOAD, unique key ids."
    )
    fallback_key = SignedKeySerializer(required=False, allow_null=True)

    def validate(self, attrs):
        name = attrs.pop("name", None)
        attrs["device_name"] = attrs.get("device_name") or name
        if not attrs["device_name"]:
            raise serializers.ValidationError({"device_name": ["This field is required."]})
        attrs.setdefault("one_time_prekeys", [])
        attrs.setdefault("fallback_key", None)
        return attrs


class PrekeysUploadSerializer(serializers.Serializer):
    """At least one of the two."""

    one_time_prekeys = OneTimeKeySerializer(
        many=True, required=False, help_text="At most E2EE_MAX_PREKEYS_PER_UPLOAD, unique key ids."
    )
    fallback_key = SignedKeySerializer(
        required=False, allow_null=True, help_text="Replaces the fallback key."
    )

    def validate(self, attrs):
        attrs.setdefault("one_time_prekeys", [])
        attrs.setdefault("fallback_key", None)
        return attrs


class SignedPrekeyRotateSerializer(SignedKeySerializer):
    """PUT body: {key_id, public_key, signature} (also accepted wrapped as {"signed_prekey": {...}})."""

    def to_internal_value(self, data):
        if (
            isinstance(data, dict)
            and isinstance(data.get("signed_prekey"), dict)
            and "public_key" not in data
        ):
            data = data["signed_prekey"]
        return super().to_internal_value(data)


class DeviceBindSerializer(serializers.Serializer):
    challenge = serializers.CharField(
        trim_whitespace=False, help_text="From POST /e2ee/devices/{device_id}/challenge; single use."
    )
    signature = _key_field(
        help_text="Ed25519 signature by the device's signing key over the UTF-8 bytes "
        "`chatsite.e2ee.device-bind.v1\\n<challenge>\\n<device_id>\\n<session_id>` (docs/dm.md), "
        "standard base64 of 64 bytes, unpadded.",
    )


# --- Output ---------------------------------------------------------------------------------


class DeviceSerializer(serializers.Serializer):
    device_id = serializers.UUIDField()
    device_name = serializers.CharField()
    status = serializers.ChoiceField(choices=["active", "revoked"])
    identity_key = serializers.CharField()
    signing_key = serializers.CharField()
    prekeys_remaining = serializers.IntegerField()
    signed_prekey_age_days = serializers.IntegerField(allow_null=True)
    signed_prekey_stale = serializers.BooleanField()
    last_seen_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    current = serializers.BooleanField(help_text="Bound to the calling session.")


class DeviceListSerializer(serializers.Serializer):
    devices = DeviceSerializer(many=True)


class DeviceChallengeSerializer(serializers.Serializer):
    challenge = serializers.CharField(help_text="Random, single use, for this session and device only.")
    expires_at = serializers.DateTimeField()


class PrekeysRemainingSerializer(serializers.Serializer):
    prekeys_remaining = serializers.IntegerField()


class SignedPrekeyOutSerializer(serializers.Serializer):
    device_id = serializers.UUIDField()
    signed_prekey = SignedKeySerializer()
    signed_prekey_uploaded_at = serializers.DateTimeField()


class BundleDeviceSerializer(serializers.Serializer):
    device_id = serializers.UUIDField()
    identity_key = serializers.CharField()
    signing_key = serializers.CharField()
    signed_prekey = SignedKeySerializer()
    signed_prekey_stale = serializers.BooleanField()
    one_time_prekey = OneTimeKeySerializer(
        allow_null=True, help_text="The fallback key when `fallback` is true."
    )
    fallback = serializers.BooleanField()


class BundleSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    devices = BundleDeviceSerializer(many=True)
    exhausted_devices = serializers.ListField(
        child=serializers.UUIDField(),
        help_text="Active devices with neither a one-time prekey nor a fallback key.",
    )
