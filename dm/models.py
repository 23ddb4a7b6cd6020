"""E2EE direct messages: devices, key bundles, one-time prekeys, conversations and per-device queues.

Tables and columns are the ones seed 001's SQL uses (e2ee_devices.device_id/user_id/device_name/
status, e2ee_key_bundles.device_id/prekeys_remaining, dm_messages.sender_user_id/created_at,
dm_delivery.message_id/delivered_at). The server stores public keys and opaque ciphertext only.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone


class Device(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        REVOKED = "revoked"

    device_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="e2ee_devices")
    device_name = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    identity_key = models.CharField(max_length=64, help_text="Curve25519 public key, unpadded base64")
    signing_key = models.CharField(max_length=64, help_text="Ed25519 public key, unpadded base64")
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "e2ee_devices"
        indexes = [models.Index(fields=["user", "status"], name="e2ee_devices_user_status_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["active", "revoked"]), name="ck_e2ee_devices_status"
            ),
            models.CheckConstraint(
                condition=Q(status="active", revoked_at__isnull=True)
                | Q(status="revoked", revoked_at__isnull=False),
                name="ck_e2ee_devices_revoked_at",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.device_name} ({self.device_id})"


class KeyBundle(models.Model):
    """A device's signed prekey and fallback key, and the count of its one-time prekeys.

    `prekeys_remaining` is kept equal to the device's rows in e2ee_one_time_prekeys by the same
    transactions that insert and claim them (the runbook queries read it directly).
    """

    device = models.OneToOneField(
        Device, primary_key=True, on_delete=models.CASCADE, related_name="bundle", db_column="device_id"
    )
    signed_prekey_id = models.CharField(max_length=64)
    signed_prekey = models.CharField(max_length=64)
    signed_prekey_signature = models.CharField(max_length=128)
    signed_prekey_uploaded_at = models.DateTimeField(default=timezone.now)
    fallback_key_id = models.CharField(max_length=64, blank=True, default="")
    fallback_key = models.CharField(max_length=64, blank=True, default="")
    fallback_key_signature = models.CharField(max_length=128, blank=True, default="")
    prekeys_remaining = models.IntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "e2ee_key_bundles"
        constraints = [
            models.CheckConstraint(
                condition=Q(prekeys_remaining__gte=0), name="ck_e2ee_key_bundles_remaining"
            )
        ]
        indexes = [
            # The runbook's "devices with low OTPK pools" and the stale signed prekey scan
            # (ops/integrity, prekey reminders) read only the few offending rows through these.
            models.Index(fields=["prekeys_remaining"], name="e2ee_key_bundles_remaining_idx"),
            models.Index(fields=["signed_prekey_uploaded_at"], name="e2ee_key_bundles_spk_age_idx"),
        ]

    def __str__(self) -> str:
        return f"bundle of {self.device_id} ({self.prekeys_remaining} prekeys)"


class OneTimePrekey(models.Model):
    """One unclaimed one-time prekey. Claiming deletes the row (DELETE ... RETURNING), so a key can
    never be handed out twice; `id` order is upload order."""

    id = models.BigAutoField(primary_key=True)
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="one_time_prekeys")
    key_id = models.CharField(max_length=64)
    public_key = models.CharField(max_length=64)
    uploaded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "e2ee_one_time_prekeys"
        constraints = [
            models.UniqueConstraint(fields=["device", "key_id"], name="uq_e2ee_otpk_device_key"),
        ]
        indexes = [models.Index(fields=["device", "id"], name="e2ee_otpk_device_order_idx")]

    def __str__(self) -> str:
        return f"{self.device_id}:{self.key_id}"


class Conversation(models.Model):
    """A one-to-one conversation; the pair is stored ordered so it exists once."""

    id = models.BigAutoField(primary_key=True)
    user_low = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    user_high = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "dm_conversations"
        constraints = [
            models.UniqueConstraint(fields=["user_low", "user_high"], name="uq_dm_conversations_pair"),
            models.CheckConstraint(
                condition=Q(user_low__lt=F("user_high")), name="ck_dm_conversations_order"
            ),
        ]

    def __str__(self) -> str:
        return f"conversation {self.pk} ({self.user_low_id}, {self.user_high_id})"

    def other_user_id(self, user_id: int) -> int:
        return self.user_high_id if user_id == self.user_low_id else self.user_low_id


class Message(models.Model):
    """Metadata of one sent message; the ciphertexts are per recipient device in dm_delivery."""

    id = models.BigAutoField(primary_key=True)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    sender_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    sender_device = models.ForeignKey(Device, null=True, on_delete=models.SET_NULL, related_name="+")
    client_message_id = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "dm_messages"
        constraints = [
            # The idempotency key: a retry at any later time finds the original row.
            models.UniqueConstraint(
                fields=["sender_device", "client_message_id"], name="uq_dm_messages_client_id"
            ),
        ]
        indexes = [
            models.Index(fields=["conversation", "id"], name="dm_messages_conv_idx"),
            models.Index(fields=["sender_user", "created_at"], name="dm_messages_sender_time_idx"),
            models.Index(fields=["created_at"], name="dm_messages_created_idx"),
        ]

    def __str__(self) -> str:
        return f"message {self.pk} from {self.sender_user_id}"


class DeviceQueue(models.Model):
    """Each device's queue position. `last_seq` is taken with a row lock in the sending
    transaction, so sequence numbers commit in order per device: a cursor never skips a row
    that commits later."""

    device = models.OneToOneField(
        Device, primary_key=True, on_delete=models.CASCADE, related_name="queue", db_column="device_id"
    )
    last_seq = models.BigIntegerField(default=0)
    acked_seq = models.BigIntegerField(default=0)

    class Meta:
        db_table = "dm_device_queues"

    def __str__(self) -> str:
        return f"queue of {self.device_id} at {self.last_seq} (acked {self.acked_seq})"


class Delivery(models.Model):
    """One message's ciphertext for one recipient device, and what became of it."""

    id = models.BigAutoField(primary_key=True)
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="deliveries")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="deliveries")
    recipient_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    seq = models.BigIntegerField(help_text="Position in the device's queue: the cursor")
    message_type = models.SmallIntegerField(default=0, help_text="Olm message type (0 pre-key, 1 normal)")
    ciphertext = models.TextField()
    created_at = models.DateTimeField(default=timezone.now, help_text="Queued")
    sent_at = models.DateTimeField(null=True, blank=True, help_text="First handed to a live stream or fetch")
    delivered_at = models.DateTimeField(null=True, blank=True, help_text="Acknowledged by the device")

    class Meta:
        db_table = "dm_delivery"
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["device", "seq"], name="uq_dm_delivery_device_seq"),
            # Also the index for "deliveries of a message" (tracing, purge): no separate one needed.
            models.UniqueConstraint(fields=["message", "device"], name="uq_dm_delivery_message_device"),
        ]
        indexes = [
            models.Index(
                fields=["device", "created_at"],
                name="dm_delivery_pending_idx",
                condition=Q(delivered_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"message {self.message_id} -> {self.device_id} #{self.seq}"
