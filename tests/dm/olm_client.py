"""An Olm client built on vodozemac, talking to chatsite only through its public API.

It is what a real client library does: publish keys, fetch a bundle, open a session, encrypt one
envelope per device, decrypt what arrives. Nothing in here knows the server's internals.

Signatures are `account.sign(raw 32 key bytes)`, the scheme the server verifies. Keep the
`OlmDevice` around to build later uploads (more one-time keys, a new signed prekey) and to prove
a claimed key really opens an Olm session with the device.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import vodozemac


def b64e(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def b64d(value: str) -> bytes:
    return base64.b64decode(value + "=" * (-len(value) % 4))


def _sorted_keys(keys: dict) -> list[tuple[str, Any]]:
    # vodozemac key ids are base64 big-endian counters; the dict is not ordered.
    return sorted(keys.items(), key=lambda kv: int.from_bytes(b64d(kv[0]), "big"))


class OlmDevice:
    __test__ = False  # not a pytest class

    def __init__(self, name: str = "test phone", *, account: vodozemac.Account | None = None) -> None:
        self.name = name
        self.account = account or vodozemac.Account()
        self.sessions: dict[str, vodozemac.Session] = {}  # by peer device id
        self.device_id: str | None = None

    # --- publishing keys --------------------------------------------------------------------

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

    def registration(self, *, n_prekeys: int = 20, fallback: bool = True, name: str | None = None) -> dict:
        """The POST /e2ee/devices body (and `device_register`'s arguments but for the name's key)."""
        signed_prekey = self.signed_key()
        return {
            "device_name": name or self.name,
            "identity_key": self.identity_key,
            "signing_key": self.signing_key,
            "signed_prekey": signed_prekey,
            "one_time_prekeys": self.one_time_keys(n_prekeys),
            "fallback_key": self.signed_key(fallback=True) if fallback else None,
        }

    # --- sessions -------------------------------------------------------------------------------

    def open_session(self, bundle_device: dict) -> None:
        """Outbound session from a fetched bundle entry (one-time key, or the flagged fallback)."""
        identity = vodozemac.Curve25519PublicKey.from_base64(bundle_device["identity_key"])
        one_time = vodozemac.Curve25519PublicKey.from_base64(bundle_device["one_time_prekey"]["public_key"])
        self.sessions[bundle_device["device_id"]] = self.account.create_outbound_session(identity, one_time)

    def envelope(self, peer_device_id: str, plaintext: bytes) -> dict:
        message_type, body = self.sessions[peer_device_id].encrypt(plaintext).to_parts()
        return {"device_id": peer_device_id, "ciphertext": b64e(body), "type": message_type}

    def decrypt(self, frame: dict, sender_identity_key: str) -> bytes:
        message = vodozemac.AnyOlmMessage.from_parts(frame["message_type"], b64d(frame["ciphertext"]))
        peer = frame["sender_device_id"]
        session = self.sessions.get(peer)
        pre_key = message.to_pre_key()
        if session is None and pre_key is not None:
            identity = vodozemac.Curve25519PublicKey.from_base64(sender_identity_key)
            session, plaintext = self.account.create_inbound_session(identity, pre_key)
            self.sessions[peer] = session
            return plaintext
        return session.decrypt(message)


def new_client_message_id() -> str:
    return uuid.uuid4().hex


def register_device(client, *, n_prekeys: int = 20, fallback: bool = True, name: str = "test phone"):
    """Register a fresh device through the API; returns (OlmDevice, response body)."""
    device = OlmDevice(name)
    payload = device.registration(n_prekeys=n_prekeys, fallback=fallback)
    resp = client.post("/e2ee/devices", payload, format="json")
    assert resp.status_code == 201, resp.content
    return device, resp.json()
