"""Input and output shapes of the E2EE device and bundle endpoints.

Keys and signatures are strings: standard base64, unpadded as vodozemac prints them (padded input
is accepted and stored unpadded). Public keys are 32 bytes (43 characters), signatures 64 bytes
(86 characters).
"""

from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from dm.services.devices import KEY_BYTES, SIGNATURE_BYTES, b64_decode_exact, b64_encode


class Base64KeyField(serializers.CharField):
    """A base64 string that must decode to exactly `size` bytes; validated to its unpadded form."""

    def __init__(self, *, size: int = KEY_BYTES, **kwargs):
        self.size = size
        kwargs.setdefault("max_length", 4 * ((size + 2) // 3))
        kwargs.setdefault("trim_whitespace", False)
        kwargs.setdefault("help_text", f"Standard base64 of {size} bytes, unpadded as vodozemac prints it.")
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            raise serializers.ValidationError("Must be a base64 string.")
        value = super().to_internal_value(data)
        try:
            return b64_encode(b64_decode_exact(value, size=self.size))
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc


class KeyIdField(serializers.RegexField):
    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", "The client's key id, e.g. vodozemac's 11-character id.")
        super().__init__(
            r"^\S{1,64}\Z",
            max_length=64,
            error_messages={"invalid": "Must be a key id of 1 to 64 characters without spaces."},
            **kwargs,
        )


class OneTimeKeySerializer(serializers.Serializer):
    key_id = KeyIdField()
    public_key = Base64KeyField()


class SignedKeySerializer(serializers.Serializer):
    key_id = KeyIdField()
    public_key = Base64KeyField()
    signature = Base64KeyField(
        size=SIGNATURE_BYTES,
        help_text="Ed25519 signature by the signing key over the "
        "raw 32 bytes of public_key, unpadded base64.",
    )


def _validate_batch(keys: list[dict]) -> list[dict]:
    cap = settings.E2EE_MAX_PREKEYS_PER_UPLOAD
    if len(keys) > cap:
        raise serializers.ValidationError(
            f"At most {cap} one-time prekeys per upload (E2EE_MAX_PREKEYS_PER_UPLOAD)."
        )
    ids = [k["key_id"] for k in keys]
    if len(set(ids)) != len(ids):
        raise serializers.ValidationError("Key ids must be unique within an upload.")
    return keys


class DeviceRegisterSerializer(serializers.Serializer):
    device_name = serializers.CharField(max_length=64, required=False, help_text="Also accepted as `name`.")
    name = serializers.CharField(max_length=64, required=False, write_only=True)
    identity_key = Base64KeyField(help_text="Curve25519 identity key (vodozemac `curve25519_key`).")
    signing_key = Base64KeyField(help_text="Ed25519 signing key (vodozemac `ed25519_key`).")
    signed_prekey = SignedKeySerializer()
    one_time_prekeys = OneTimeKeySerializer(many=True, required=False)
    fallback_key = SignedKeySerializer(required=False, allow_null=True)

    def validate_one_time_prekeys(self, value):
        return _validate_batch(value)

    def validate(self, attrs):
        name = attrs.pop("name", None)
        attrs["device_name"] = attrs.get("device_name") or name
        if not attrs["device_name"]:
            raise serializers.ValidationError({"device_name": ["This field is required."]})
        attrs.setdefault("one_time_prekeys", [])
        attrs.setdefault("fallback_key", None)
        return attrs


class PrekeysUploadSerializer(serializers.Serializer):
    one_time_prekeys = OneTimeKeySerializer(many=True, required=False)
    fallback_key = SignedKeySerializer(
        required=False, allow_null=True, help_text="Replaces the fallback key."
    )

    def validate_one_time_prekeys(self, value):
        return _validate_batch(value)

    def validate(self, attrs):
        attrs.setdefault("one_time_prekeys", [])
        attrs.setdefault("fallback_key", None)
        if not attrs["one_time_prekeys"] and attrs["fallback_key"] is None:
            raise serializers.ValidationError(
                {"one_time_prekeys": ["Upload at least one one-time prekey or a fallback key."]}
            )
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
