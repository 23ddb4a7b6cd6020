"""E2EE groups: membership, roles, invites, server-enforced epochs, sender keys and messages.

Tables and columns are the ones seed 000's SQL uses (groups.title/max_participants/group_epoch;
group_participants.group_id/user_id/role/is_banned/joined_at with uq_group_participants_group_user;
group_messages.group_epoch/proto/sender_device_id/sender_user_id/created_at; group_sender_keys.
sender_user_id/sender_device_id/group_epoch/sender_key_id/rotated_at; group_invites.code/
expires_at/max_uses/uses/created_at; group_delivery.message_id). Group ids are UUIDs. The server
stores opaque ciphertext only.

Concurrency: every write that changes who is in a group, or sends to it, starts with an UPDATE of
the group's row (member_count, group_epoch or last_seq), so they serialise per group on that row
lock. `ck_groups_member_count` (member_count <= max_participants) makes capacity a database rule:
an UPDATE that would pass it fails, whatever the race.

Delivery model (docs/groups.md): one row per message (fan-out on read), a per-group sequence
`seq` as every member device's cursor, and one `group_delivery` row per (group, device) holding
the device's acknowledged position. A message to 100 members with two devices each writes one
row, not 200.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from dm.models import Device

# group_messages.proto
PROTO_MESSAGE = 1  # a Megolm (sender-key) encrypted group message: one ciphertext for everyone
PROTO_SENDER_KEY = 11  # a sender-key distribution: one Olm envelope per member device


class Group(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=128)
    max_participants = models.IntegerField()
    # Non-banned participants; kept equal to them by the transactions that add and remove them.
    member_count = models.IntegerField(default=0)
    group_epoch = models.BigIntegerField(default=1)
    # The last message's position in the group: every member device's cursor.
    last_seq = models.BigIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "groups"
        constraints = [
            models.CheckConstraint(
                condition=Q(member_count__gte=0) & Q(member_count__lte=F("max_participants")),
                name="ck_groups_member_count",
            ),
            models.CheckConstraint(condition=Q(group_epoch__gte=1), name="ck_groups_epoch"),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.id})"


class Participant(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        ADMIN = "admin"
        MEMBER = "member"

    id = models.BigAutoField(primary_key=True)
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="participants")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="group_participations"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    is_banned = models.BooleanField(default=False)
    joined_at = models.DateTimeField(default=timezone.now)
    banned_at = models.DateTimeField(null=True, blank=True)
    # The group's `seq` when the user joined: a member reads messages after it, never before.
    joined_seq = models.BigIntegerField(default=0)

    class Meta:
        db_table = "group_participants"
        constraints = [
            models.UniqueConstraint(fields=["group", "user"], name="uq_group_participants_group_user"),
            # At most one owner per group (the service keeps exactly one).
            models.UniqueConstraint(
                fields=["group"], condition=Q(role="owner"), name="uq_group_participants_one_owner"
            ),
            models.CheckConstraint(
                condition=Q(role__in=["owner", "admin", "member"]), name="ck_group_participants_role"
            ),
            # A banned user holds no role above member and is never the owner.
            models.CheckConstraint(
                condition=Q(is_banned=False) | Q(role="member"), name="ck_group_participants_banned_member"
            ),
        ]
        indexes = [
            # The runbook's "participants by user" (my groups, users with many groups).
            models.Index(fields=["user", "group"], name="group_participants_user_idx"),
            models.Index(fields=["group", "joined_at"], name="group_participants_seniority"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.group_id} ({self.role}{', banned' if self.is_banned else ''})"


class EpochChange(models.Model):
    """Why a group's epoch moved: what a sender with a stale epoch is told (EPOCH_STALE)."""

    class Kind(models.TextChoices):
        MEMBER_ADDED = "member_added"
        MEMBER_REMOVED = "member_removed"
        DEVICE_ADDED = "device_added"
        DEVICE_REMOVED = "device_removed"

    id = models.BigAutoField(primary_key=True)
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="epoch_changes")
    group_epoch = models.BigIntegerField(help_text="The epoch this change started")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    user_id = models.BigIntegerField()
    device_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "group_epoch_changes"
        indexes = [models.Index(fields=["group", "group_epoch"], name="group_epoch_changes_idx")]

    def __str__(self) -> str:
        return f"{self.group_id} epoch {self.group_epoch}: {self.kind} {self.user_id}"


class Invite(models.Model):
    id = models.BigAutoField(primary_key=True)
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="invites")
    code = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    max_uses = models.IntegerField(null=True, blank=True)
    uses = models.IntegerField(default=0)

    class Meta:
        db_table = "group_invites"
        constraints = [
            models.CheckConstraint(
                condition=Q(max_uses__isnull=True) | (Q(max_uses__gte=1) & Q(uses__lte=F("max_uses"))),
                name="ck_group_invites_uses",
            ),
            models.CheckConstraint(condition=Q(uses__gte=0), name="ck_group_invites_uses_positive"),
        ]
        indexes = [models.Index(fields=["expires_at"], name="group_invites_expiry_idx")]

    def __str__(self) -> str:
        return f"invite {self.pk} to {self.group_id}"


class InviteRedemption(models.Model):
    """Every redemption: who, when, which invite."""

    id = models.BigAutoField(primary_key=True)
    invite = models.ForeignKey(Invite, on_delete=models.CASCADE, related_name="redemptions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    redeemed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "group_invite_redemptions"
        indexes = [models.Index(fields=["redeemed_at"], name="group_invite_redemptions_time")]

    def __str__(self) -> str:
        return f"{self.user_id} redeemed invite {self.invite_id}"


class GroupMessage(models.Model):
    id = models.BigAutoField(primary_key=True)
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="messages")
    seq = models.BigIntegerField(help_text="Position in the group: the member devices' cursor")
    # SET_NULL: a deleted account's messages stay (the other members hold them, and their
    # positions in group_delivery may point at them).
    sender_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    sender_device = models.ForeignKey(Device, null=True, on_delete=models.SET_NULL, related_name="+")
    group_epoch = models.BigIntegerField()
    proto = models.SmallIntegerField(
        default=PROTO_MESSAGE, help_text="1 = group message, 11 = sender-key distribution"
    )
    sender_key_id = models.CharField(max_length=64)
    client_message_id = models.CharField(max_length=64)
    # Opaque Megolm ciphertext (proto 1); empty for a distribution, whose envelopes are per device.
    ciphertext = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "group_messages"
        constraints = [
            models.UniqueConstraint(fields=["group", "seq"], name="uq_group_messages_group_seq"),
            models.UniqueConstraint(
                fields=["sender_device", "client_message_id"], name="uq_group_messages_client_id"
            ),
            models.CheckConstraint(condition=Q(proto__in=[1, 11]), name="ck_group_messages_proto"),
        ]
        indexes = [
            # The runbook's "messages by group and time", and the rate query by sender.
            models.Index(fields=["group", "created_at"], name="group_messages_group_time"),
            models.Index(fields=["sender_user", "created_at"], name="group_messages_sender_time"),
            models.Index(fields=["created_at"], name="group_messages_created_idx"),
        ]

    def __str__(self) -> str:
        return f"group message {self.pk} ({self.group_id} #{self.seq})"


class SenderKey(models.Model):
    """A device's sender key for one epoch of a group (the distribution is a proto 11 message)."""

    id = models.BigAutoField(primary_key=True)
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="sender_keys")
    sender_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    sender_device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="+")
    group_epoch = models.BigIntegerField()
    sender_key_id = models.CharField(max_length=64)
    message = models.OneToOneField(GroupMessage, on_delete=models.CASCADE, related_name="sender_key")
    rotated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "group_sender_keys"
        constraints = [
            models.UniqueConstraint(
                fields=["group", "sender_device", "group_epoch", "sender_key_id"],
                name="uq_group_sender_keys_key",
            ),
        ]
        indexes = [models.Index(fields=["group", "group_epoch"], name="group_sender_keys_epoch")]

    def __str__(self) -> str:
        return f"sender key {self.sender_key_id} of {self.sender_device_id} (epoch {self.group_epoch})"


class SenderKeyEnvelope(models.Model):
    """One member device's Olm envelope of a sender key, and the ledger of its acknowledgement."""

    id = models.BigAutoField(primary_key=True)
    sender_key = models.ForeignKey(SenderKey, on_delete=models.CASCADE, related_name="envelopes")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="+")
    recipient_user_id = models.BigIntegerField()
    message_type = models.SmallIntegerField(default=0, help_text="Olm message type (0 pre-key, 1 normal)")
    ciphertext = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    acked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "group_sender_key_envelopes"
        constraints = [
            models.UniqueConstraint(fields=["sender_key", "device"], name="uq_group_sender_key_envelopes"),
        ]
        indexes = [
            models.Index(
                fields=["created_at"], name="group_skenv_unacked_idx", condition=Q(acked_at__isnull=True)
            ),
            models.Index(fields=["device"], name="group_skenv_device_idx"),
        ]

    def __str__(self) -> str:
        return f"envelope of {self.sender_key_id} for {self.device_id}"


class Delivery(models.Model):
    """A member device's acknowledged position in a group: `message_id` is the last message it
    acknowledged (its `seq` is `acked_seq`). One row per (group, device), written on ack."""

    id = models.BigAutoField(primary_key=True)
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="deliveries")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="+")
    # RESTRICT: cleanup never deletes a message some device's position points at (that device
    # would read acknowledged messages again); deleting the whole group deletes both.
    message = models.ForeignKey(GroupMessage, on_delete=models.RESTRICT, related_name="+")
    acked_seq = models.BigIntegerField()
    delivered_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "group_delivery"
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["group", "device"], name="uq_group_delivery_group_device"),
        ]

    def __str__(self) -> str:
        return f"{self.device_id} at {self.group_id} #{self.acked_seq}"
