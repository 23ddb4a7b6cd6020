"""Key handling for E2EE devices: base64 spelling, key and key-id checks, Ed25519 signatures.

The server stores public keys only. Keys and signatures travel as standard base64 (vodozemac's
`to_base64()` prints it unpadded; padded input is accepted too) and are stored unpadded. A
signature is Ed25519 by the device's signing key over the raw 32 bytes of the Curve25519 key it
signs.

These are the only checks on uploaded keys: the services in `dm.services` run them and the REST
serializers check shape only, so every caller gets the same 400 VALIDATION_ERROR (field errors in
`errors`, nested like DRF's) or INVALID_SIGNATURE. The bytes a device signs to bind a new session
to itself are defined here too (`device_bind_message`). No database access here.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timedelta
from typing import Any, TypedDict

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.utils import timezone

from chatsite.api.errors import ApiError

KEY_BYTES = 32
SIGNATURE_BYTES = 64


class OneTimeKeyIn(TypedDict):
    key_id: str
    public_key: str


class SignedKeyIn(TypedDict):
    key_id: str
    public_key: str
    signature: str


# --- Encoding -------------------------------------------------------------------------------


def b64_decode_exact(value: object, *, size: int) -> bytes:
    """Raw bytes of a standard-base64 string (padded or not) that must decode to `size` bytes.

    Only the canonical encoding is accepted (no stray bits in the last character, no URL-safe
    alphabet, no whitespace), so one key has exactly one stored spelling.
    """
    if not isinstance(value, str):
        raise ValueError("Must be a base64 string.")
    unpadded = value.rstrip("=")
    try:
        raw = base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("Must be standard base64 (A-Z, a-z, 0-9, +, /).") from exc
    if len(raw) != size:
        raise ValueError(f"Must encode exactly {size} bytes (got {len(raw)}).")
    if b64_encode(raw) != unpadded or len(value) - len(unpadded) not in (0, (-len(unpadded)) % 4):
        raise ValueError("Must be canonical base64.")
    return raw


def b64_encode(raw: bytes) -> str:
    """Unpadded standard base64, as vodozemac prints keys."""
    return base64.b64encode(raw).decode("ascii").rstrip("=")


# --- Field checks: collect every error, then raise_if_invalid ------------------------------------


def _field_error(errors: dict, path: tuple, message: str) -> None:
    node = errors
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = [message]


def normalise_key(value: object, size: int, errors: dict, path: tuple) -> str:
    """Decode `value` or record a field error under `path`; returns the unpadded spelling."""
    try:
        return b64_encode(b64_decode_exact(value, size=size))
    except ValueError as exc:
        _field_error(errors, path, str(exc))
        return ""


def normalise_key_id(value: object, errors: dict, path: tuple) -> str:
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if not text or len(text) > 64 or any(ch.isspace() for ch in text):
        _field_error(errors, path, "Must be a non-empty key id of at most 64 characters without spaces.")
    return text


def clean_signed_key(key: SignedKeyIn | dict, field: str, errors: dict) -> dict[str, str]:
    if not isinstance(key, dict):
        errors[field] = ["Must be an object with key_id, public_key and signature."]
        return {}
    return {
        "key_id": normalise_key_id(key.get("key_id"), errors, (field, "key_id")),
        "public_key": normalise_key(key.get("public_key"), KEY_BYTES, errors, (field, "public_key")),
        "signature": normalise_key(key.get("signature"), SIGNATURE_BYTES, errors, (field, "signature")),
    }


def clean_one_time_keys(keys: list, errors: dict, field: str = "one_time_prekeys") -> list[dict[str, str]]:
    if not isinstance(keys, list):
        errors[field] = ["Must be a list of {key_id, public_key} objects."]
        return []
    cap = settings.E2EE_MAX_PREKEYS_PER_UPLOAD
    if len(keys) > cap:
        errors[field] = [f"At most {cap} one-time prekeys per upload (E2EE_MAX_PREKEYS_PER_UPLOAD)."]
        return []
    item_errors: dict[int, Any] = {}
    cleaned = []
    for i, key in enumerate(keys):
        if not isinstance(key, dict):
            item_errors[i] = ["Must be an object with key_id and public_key."]
            continue
        cleaned.append(
            {
                "key_id": normalise_key_id(key.get("key_id"), item_errors, (i, "key_id")),
                "public_key": normalise_key(key.get("public_key"), KEY_BYTES, item_errors, (i, "public_key")),
            }
        )
    ids = [k["key_id"] for k in cleaned]
    if not item_errors and len(set(ids)) != len(ids):
        errors[field] = ["Key ids must be unique within an upload."]
    elif item_errors:
        # One entry per uploaded key, {} where it is fine: the list DRF gives for a list of objects.
        errors[field] = [item_errors.get(i, {}) for i in range(len(keys))]
    return cleaned


def raise_if_invalid(errors: dict) -> None:
    """400 VALIDATION_ERROR with the collected field errors under `errors`."""
    if errors:
        raise ApiError("VALIDATION_ERROR", errors=errors)


# --- Signatures and age ---------------------------------------------------------------------


def ed25519_verifies(signing_key: str, signature: str, message: bytes) -> bool:
    """True if `signature` (base64 of 64 bytes) is the Ed25519 signature of `message` by
    `signing_key` (base64 of 32 bytes); False for a wrong or malformed one."""
    try:
        Ed25519PublicKey.from_public_bytes(b64_decode_exact(signing_key, size=KEY_BYTES)).verify(
            b64_decode_exact(signature, size=SIGNATURE_BYTES), message
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_signature(signing_key: str, key: dict[str, str], field: str) -> None:
    """Ed25519 over the raw 32 bytes of the Curve25519 key (vodozemac's `Account.sign(raw)`).

    `signing_key` is the device's stored (or already checked) base64 Ed25519 key."""
    try:
        public_key = b64_decode_exact(key["public_key"], size=KEY_BYTES)
    except ValueError:
        public_key = None
    if public_key is None or not ed25519_verifies(signing_key, key["signature"], public_key):
        raise ApiError(
            "INVALID_SIGNATURE", f"The {field} signature does not verify with the signing key.", field=field
        )


# Signing a server challenge proves a client holds a device's private signing key (docs/dm.md,
# "Coming back on an existing device"). The prefix keeps these signatures apart from every other
# use of the key: a prekey signature covers 32 raw key bytes, never text starting with this.
DEVICE_BIND_PREFIX = "chatsite.e2ee.device-bind.v1"


def device_bind_message(*, challenge: str, device_id: object, session_id: object) -> bytes:
    """The bytes a device signs to bind a session to it: UTF-8 of the prefix, the challenge, the
    device id and the session id (UUIDs in lower-case hyphenated form), joined by newlines, no
    trailing newline. Naming the session means a signature cannot be replayed for another one."""
    parts = [DEVICE_BIND_PREFIX, challenge, str(device_id).lower(), str(session_id).lower()]
    return "\n".join(parts).encode()


def signed_prekey_stale_before() -> datetime:
    """Signed prekeys uploaded before this are past E2EE_SIGNED_PREKEY_MAX_AGE_DAYS (stale)."""
    return timezone.now() - timedelta(days=settings.E2EE_SIGNED_PREKEY_MAX_AGE_DAYS)
