"""Real client keys for tests: device-registration payloads built with a vodozemac Account.

Signatures are `account.sign(raw 32 key bytes)`, the scheme the server verifies. Keep the
`TestDevice` around to build later uploads (more one-time keys, a new signed prekey) and to
prove a claimed key really opens an Olm session with the device.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import vodozemac


def b64e(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def b64d(value: str) -> bytes:
    return base64.b64decode(value + "=" * (-len(value) % 4))


def _sorted_keys(keys: dict) -> list[tuple[str, Any]]:
    # vodozemac key ids are base64 big-endian counters; the dict is not ordered.
    return sorted(keys.items(), key=lambda kv: int.from_bytes(b64d(kv[0]), "big"))


@dataclass
class TestDevice:
    __test__ = False  # not a pytest class

    account: vodozemac.Account = field(default_factory=vodozemac.Account)

    @property
    def identity_key(self) -> str:
        return self.account.curve25519_key.to_base64()

    @property
    def signing_key(self) -> str:
        return self.account.ed25519_key.to_base64()

    def sign(self, public_key_b64: str) -> str:
        return self.account.sign(b64d(public_key_b64)).to_base64()

    def one_time_keys(self, n: int) -> list[dict[str, str]]:
        """n fresh one-time keys, oldest (lowest counter) first, marked published."""
        if n <= 0:
            return []
        self.account.generate_one_time_keys(n)
        keys = [
            {"key_id": kid, "public_key": key.to_base64()}
            for kid, key in _sorted_keys(self.account.one_time_keys)
        ]
        self.account.mark_keys_as_published()
        return keys

    def signed_key(self, *, fallback: bool = False) -> dict[str, str]:
        """A signed Curve25519 key: a fresh one-time key, or the account's fallback key."""
        if fallback:
            self.account.generate_fallback_key()
            kid, key = next(iter(self.account.fallback_key.items()))
            self.account.mark_keys_as_published()
            public = key.to_base64()
        else:
            public_entry = self.one_time_keys(1)[0]
            kid, public = public_entry["key_id"], public_entry["public_key"]
        return {"key_id": kid, "public_key": public, "signature": self.sign(public)}

    def registration(self, *, n_prekeys: int = 20, fallback: bool = True, name: str = "test phone") -> dict:
        signed_prekey = self.signed_key()
        return {
            "device_name": name,
            "identity_key": self.identity_key,
            "signing_key": self.signing_key,
            "signed_prekey": signed_prekey,
            "one_time_prekeys": self.one_time_keys(n_prekeys),
            "fallback_key": self.signed_key(fallback=True) if fallback else None,
        }


def registration_payload(*, n_prekeys: int = 20, fallback: bool = True, name: str = "test phone") -> dict:
    return TestDevice().registration(n_prekeys=n_prekeys, fallback=fallback, name=name)


def register_device(client, *, n_prekeys: int = 20, fallback: bool = True, name: str = "test phone"):
    """Register a fresh device through the API; returns (TestDevice, response body)."""
    device = TestDevice()
    resp = client.post(
        "/e2ee/devices", device.registration(n_prekeys=n_prekeys, fallback=fallback, name=name), format="json"
    )
    assert resp.status_code == 201, resp.content
    return device, resp.json()


def session_client(user):
    """A logged-in API client and its Session row (for calling services as that session)."""
    from rest_framework.test import APIClient

    from chatsite.accounts import services as account_services
    from tests.factories import DEFAULT_PASSWORD

    session, token = account_services.session_login(username=user.username, password=DEFAULT_PASSWORD)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client, session
