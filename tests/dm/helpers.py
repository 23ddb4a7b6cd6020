"""Test helpers for dm: users with real vodozemac devices, registered by the device factory (the
service the API calls) unless the HTTP endpoint is what a test is about."""

from __future__ import annotations

from dataclasses import dataclass

from channels.db import database_sync_to_async
from rest_framework.test import APIClient

from chatsite.accounts import services as account_services
from chatsite.accounts.models import Session, User
from tests.dm.olm_client import OlmDevice, new_client_message_id
from tests.factories import DEFAULT_PASSWORD, ConversationFactory, DeviceFactory, UserFactory, device_keys


def _log_in(user: User) -> tuple[APIClient, Session, str]:
    session, token = account_services.session_login(username=user.username, password=DEFAULT_PASSWORD)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client, session, token


def session_client(user: User) -> tuple[APIClient, Session]:
    """A logged-in API client and its Session row (for calling services as that session)."""
    client, session, _token = _log_in(user)
    return client, session


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
    """A new session for `user` with a device (real keys) bound to it."""
    client, session, token = _log_in(user)
    keys = device_keys(user)
    registered = DeviceFactory(
        user=user, session=session, keys=keys, name=name, one_time_prekeys=one_time_keys
    )
    device = keys.olm_device(name)
    device.device_id = str(registered.pk)
    return Party(user=user, token=token, client=client, device=device)


def party(username: str | None = None, **kwargs) -> Party:
    user = UserFactory(**({"username": username} if username else {}))
    return add_device(user, **kwargs)


def open_conversation(sender: Party, recipient: Party) -> int:
    return ConversationFactory(user=sender.user, other=recipient.user).pk


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


@database_sync_to_async
def pair() -> tuple[Party, Party, int]:
    """For async tests: Alice and Bob, each with a device, and their conversation."""
    alice, bob = party(), party()
    return alice, bob, open_conversation(alice, bob)
