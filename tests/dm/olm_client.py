"""An Olm client built on vodozemac, talking to chatsite only through its public API.

It is what a real client library does: publish keys, fetch a bundle, open a session, encrypt one
envelope per device, decrypt what arrives. Nothing in here knows the server's internals.
"""

from __future__ import annotations

import base64
import uuid

import vodozemac


def b64e(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def b64d(value: str) -> bytes:
    return base64.b64decode(value + "=" * (-len(value) % 4))


class OlmDevice:
    def __init__(self, name: str = "phone", one_time_keys: int = 20):
        self.name = name
        self.account = vodozemac.Account()
        self.one_time_keys = one_time_keys
        self.sessions: dict[str, vodozemac.Session] = {}  # by peer device id
        self.device_id: str | None = None

    def _signed(self, key_id: str, key: vodozemac.Curve25519PublicKey) -> dict:
        return {
            "key_id": key_id,
            "public_key": key.to_base64(),
            "signature": self.account.sign(key.to_bytes()).to_base64(),
        }

    def registration(self) -> dict:
        """The POST /e2ee/devices body: the fallback key doubles as the signed prekey."""
        self.account.generate_one_time_keys(self.one_time_keys)
        self.account.generate_fallback_key()
        otks = sorted(self.account.one_time_keys.items())
        ((fb_id, fb_key),) = self.account.fallback_key.items()
        body = {
            "name": self.name,
            "identity_key": self.account.curve25519_key.to_base64(),
            "signing_key": self.account.ed25519_key.to_base64(),
            "signed_prekey": self._signed(fb_id, fb_key),
            "fallback_key": self._signed(fb_id, fb_key),
            "one_time_prekeys": [{"key_id": kid, "public_key": key.to_base64()} for kid, key in otks],
        }
        self.account.mark_keys_as_published()
        return body

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
