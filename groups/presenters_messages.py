"""How group messages look to clients: pure functions from models to the JSON bodies and frames
that REST responses and /ws frames share. No reads, no writes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from groups.models import GroupMessage, SenderKey, SenderKeyEnvelope


def envelope_body(envelope: SenderKeyEnvelope) -> dict[str, Any]:
    return {"message_type": envelope.message_type, "ciphertext": envelope.ciphertext}


def message_frame(message: GroupMessage, envelope: SenderKeyEnvelope | None = None) -> dict[str, Any]:
    """A `group.message` frame (and an item of GET /groups/{id}/messages): for proto 1 the Megolm
    ciphertext; for proto 11 (a sender-key distribution) only the reading device's envelope."""
    return {
        "type": "group.message",
        "group_id": str(message.group_id),
        "seq": message.seq,
        "message_id": message.pk,
        "proto": message.proto,
        "group_epoch": message.group_epoch,
        "sender_user_id": message.sender_user_id,
        "sender_device_id": str(message.sender_device_id) if message.sender_device_id else None,
        "sender_key_id": message.sender_key_id,
        "client_message_id": message.client_message_id,
        "ciphertext": message.ciphertext,
        "envelope": envelope_body(envelope) if envelope is not None else None,
        "created_at": message.created_at.isoformat(),
    }


def sent_body(message: GroupMessage, *, duplicate: bool, recipients: int) -> dict[str, Any]:
    """The answer to a send or a distribution: the REST body, and `group.sent` without its type."""
    return {
        "message_id": message.pk,
        "group_id": str(message.group_id),
        "seq": message.seq,
        "group_epoch": message.group_epoch,
        "proto": message.proto,
        "client_message_id": message.client_message_id,
        "created_at": message.created_at.isoformat(),
        "duplicate": duplicate,
        "recipients": recipients,
    }


def sender_key_body(key: SenderKey, envelopes: list[SenderKeyEnvelope]) -> dict[str, Any]:
    return {
        "sender_key_id": key.sender_key_id,
        "sender_device_id": str(key.sender_device_id),
        "group_epoch": key.group_epoch,
        "message_id": key.message_id,
        "rotated_at": key.rotated_at.isoformat(),
        "envelopes": [
            {
                "device_id": str(e.device_id),
                "recipient_user_id": e.recipient_user_id,
                "acked_at": e.acked_at.isoformat() if e.acked_at else None,
            }
            for e in envelopes
        ],
    }
