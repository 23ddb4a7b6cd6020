"""How dm's objects look to clients: pure functions from models to the JSON bodies and frames
that REST responses, /ws frames and SSE events share. No reads, no writes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dm.models import Delivery, Message
    from dm.services.messages import SendResult


def message_frame(delivery: Delivery, message: Message) -> dict[str, Any]:
    """The frame a device receives for one queued message (REST fetch, WebSocket, SSE alike)."""
    return {
        "type": "dm.message",
        "cursor": delivery.seq,
        "message_id": message.pk,
        "conversation_id": message.conversation_id,
        "sender_user_id": message.sender_user_id,
        "sender_device_id": str(message.sender_device_id) if message.sender_device_id else None,
        "client_message_id": message.client_message_id,
        "message_type": delivery.message_type,
        "ciphertext": delivery.ciphertext,
        "created_at": message.created_at.isoformat(),
    }


def sent_body(result: SendResult) -> dict[str, Any]:
    """The answer to a send: the REST body, and the `dm.sent` frame without its type."""
    message = result.message
    return {
        "message_id": message.pk,
        "conversation_id": message.conversation_id,
        "client_message_id": message.client_message_id,
        "created_at": message.created_at.isoformat(),
        "duplicate": result.duplicate,
        "recipients": result.recipients,
    }
