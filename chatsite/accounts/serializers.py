from rest_framework import serializers

from chatsite.accounts.models import Block, Contact, Session


class CredentialsSerializer(serializers.Serializer):
    # The alphabet is checked after normalisation, in services.user_register (validators.py).
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=256, trim_whitespace=False, write_only=True)


class LoginSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=256, trim_whitespace=False, write_only=True)


class RegisteredSerializer(serializers.Serializer):
    user_id = serializers.IntegerField(source="pk")
    username = serializers.CharField()


class UsernameLookupSerializer(serializers.Serializer):
    """GET /users/lookup's query: one exact name (normalised as log-in does), never a prefix."""

    username = serializers.CharField(max_length=150)


class UserLookupResultSerializer(RegisteredSerializer):
    """{user_id, username}: the name as stored (normalised)."""


class LoginResultSerializer(serializers.Serializer):
    token = serializers.CharField()
    expires_at = serializers.DateTimeField()
    user_id = serializers.IntegerField()
    session_id = serializers.UUIDField()


class SessionSerializer(serializers.ModelSerializer):
    current = serializers.SerializerMethodField()

    class Meta:
        model = Session
        fields = [
            "id",
            "token_prefix",
            "created_at",
            "expires_at",
            "last_used_at",
            "ip",
            "user_agent",
            "device_id",
            "current",
        ]

    def get_current(self, obj) -> bool:
        auth = self.context.get("current_session")
        return bool(auth and auth.pk == obj.pk)


class UserRefSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()


class ContactSerializer(serializers.ModelSerializer):
    user_id = serializers.IntegerField(source="contact_id")
    username = serializers.CharField(source="contact.username")

    class Meta:
        model = Contact
        fields = ["user_id", "username", "created_at"]


class BlockSerializer(serializers.ModelSerializer):
    user_id = serializers.IntegerField(source="blocked_id")
    username = serializers.CharField(source="blocked.username")

    class Meta:
        model = Block
        fields = ["user_id", "username", "created_at"]


# --- Documentation only: the list endpoints answer an object that wraps the list ---------------


class SessionListSerializer(serializers.Serializer):
    sessions = SessionSerializer(many=True)


class ContactListSerializer(serializers.Serializer):
    contacts = ContactSerializer(many=True)


class BlockListSerializer(serializers.Serializer):
    blocks = BlockSerializer(many=True)
