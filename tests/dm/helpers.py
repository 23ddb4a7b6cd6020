"""Test helpers for dm: users with real vodozemac devices registered through the API."""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework.test import APIClient

from chatsite.accounts.models import Session, User
from tests.conftest import login
from tests.dm.olm_client import OlmDevice, new_client_message_id
from tests.factories import UserFactory


@dataclass
class Party:
    user: User
    token: str
    client: APIClient
    device: OlmDevice

    @property
    def device_id(self) -> str:
        return self.device.device_id

    @property
    def session(self) -> Session:
        return Session.objects.get(device_id=self.device_id, revoked_at__isnull=True)


def add_device(user: User, name: str = "phone", one_time_keys: int = 5) -> Party:
    """A new session for `user` with a freshly registered device bound to it."""
    token = login(user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    device = OlmDevice(name, one_time_keys=one_time_keys)
    resp = client.post("/e2ee/devices", device.registration(), format="json")
    assert resp.status_code == 201, resp.content
    device.device_id = resp.json()["device_id"]
    return Party(user=user, token=token, client=client, device=device)


def party(username: str | None = None, **kwargs) -> Party:
    user = UserFactory(**({"username": username} if username else {}))
    return add_device(user, **kwargs)


def open_conversation(sender: Party, recipient: Party) -> int:
    resp = sender.client.post("/dm/conversations", {"user_id": recipient.user.pk}, format="json")
    assert resp.status_code in (200, 201), resp.content
    return resp.json()["id"]


def opaque_envelopes(*device_ids: str, text: str = "b3BhcXVl") -> list[dict]:
    """Envelopes with placeholder ciphertext: the server never reads it, so tests that are not
    about cryptography need no Olm session."""
    return [{"device_id": d, "ciphertext": text, "type": 1} for d in device_ids]


def send(
    sender: Party,
    conversation_id: int,
    device_ids: list[str],
    *,
    client_message_id: str | None = None,
    text: str = "b3BhcXVl",
):
    return sender.client.post(
        f"/dm/conversations/{conversation_id}/messages",
        {
            "client_message_id": client_message_id or new_client_message_id(),
            "envelopes": opaque_envelopes(*device_ids, text=text),
        },
        format="json",
    )
