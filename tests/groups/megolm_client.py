"""A Megolm group client built on vodozemac, talking to chatsite only through its public API.

One `MegolmDevice` is one device of one user: a real Olm account (tests/dm/olm_client.py) for the
pairwise channels, one outbound Megolm `GroupSession` per group (its sender key), and the
`InboundGroupSession`s other devices handed it. What a real client library does:

- `distribute(group_id)`: read the member device list (`GET /groups/{id}`), open Olm sessions to the
  devices it has none with (claiming bundles, `GET /e2ee/bundles/{user_id}`), Olm-encrypt the
  Megolm session key for each device and `POST /groups/{id}/sender-keys`;
- `send(group_id, text)`: Megolm-encrypt once for everyone, `POST /groups/{id}/messages`
  (`send_ws`: the same over `/ws` with a `group.send` frame);
- `receive_until(...)`: read `group.message` frames live from its WebSocket; a proto 11 frame's
  envelope is Olm-decrypted into an `InboundGroupSession`, a proto 1 frame Megolm-decrypted with it.

The distributed payload is JSON `{group_id, sender_device_id, session_id, session_key}`; the
receiver checks it against the frame (`sender_key_id` is the Megolm session id) so a key cannot
be replayed into another group or under another device's name. Nothing here knows the server's
internals.
"""

from __future__ import annotations

import asyncio
import collections
import json
import uuid
from collections.abc import Callable
from typing import Any

import vodozemac
from websockets.asyncio.client import ClientConnection, connect

from tests.dm.olm_client import OlmDevice, b64d, b64e

PASSWORD = "correct horse battery staple"
PROTO_MESSAGE = 1
PROTO_SENDER_KEY = 11


def create_account(server, username: str) -> tuple[int, str]:
    """Register a user and log in; returns (user_id, token)."""
    status, body = server.request("POST", "/auth/register", {"username": username, "password": PASSWORD})
    assert status == 201, body
    return login(server, username)


def login(server, username: str) -> tuple[int, str]:
    """A new session (a new token) for the user: one per device."""
    status, body = server.request("POST", "/auth/login", {"username": username, "password": PASSWORD})
    assert status == 200, body
    return body["user_id"], body["token"]


class MegolmDevice:
    __test__ = False  # not a pytest class

    def __init__(self, server, name: str, user_id: int, token: str) -> None:
        self.server = server
        self.name = name
        self.user_id = user_id
        self.token = token
        self.olm = OlmDevice(name)
        self.device_id: str | None = None
        self.ws: ClientConnection | None = None
        self._stash: collections.deque[dict] = collections.deque()  # frames read while awaiting a reply
        # Olm: every session with a peer device, most recently used last.
        self.olm_sessions: dict[str, list[vodozemac.Session]] = {}
        self.identity_keys: dict[str, str] = {}  # device id -> Curve25519 identity key (base64)
        self._unused_bundles: dict[str, dict] = {}  # claimed bundle entries not used yet
        # Megolm.
        self.outbound: dict[str, vodozemac.GroupSession] = {}  # group id -> my sender key
        self.exported_keys: list[str] = []  # every session key I created (to search the DB for)
        self.inbound: dict[tuple[str, str], vodozemac.InboundGroupSession] = {}  # (device, session id)
        # What arrived.
        self.last_seq: dict[str, int] = {}
        self.frames: list[dict] = []  # every frame read, in order
        self.keys_received: list[dict] = []  # {group_id, seq, sender_device_id, session_id}
        self.plaintexts: list[tuple[str, str, str]] = []  # (group_id, sender_device_id, text)
        self._pending: list[dict] = []  # proto 1 frames whose key has not arrived yet

    # --- setup ----------------------------------------------------------------------------------

    def register(self) -> MegolmDevice:
        status, body = self.server.request("POST", "/e2ee/devices", self.olm.registration(), token=self.token)
        assert status == 201, body
        self.device_id = self.olm.device_id = body["device_id"]
        return self

    async def connect(self) -> None:
        self.ws = await connect(
            self.server.ws + "/ws", additional_headers={"Authorization": f"Bearer {self.token}"}
        )
        hello = await self._next_of_type("hello", timeout=10)
        assert hello["device_id"] == self.device_id, hello

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
            self.ws = None

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, dict]:
        return self.server.request(method, path, body, token=self.token)

    def group(self, group_id: str) -> dict:
        status, body = self.request("GET", f"/groups/{group_id}")
        assert status == 200, body
        return body

    # --- Olm ------------------------------------------------------------------------------------

    def _claim(self, user_id: int) -> None:
        """Claim the user's bundle: an identity key and a one-time key per active device."""
        status, bundle = self.request("GET", f"/e2ee/bundles/{user_id}")
        assert status == 200, bundle
        for entry in bundle["devices"]:
            self.identity_keys[entry["device_id"]] = entry["identity_key"]
            self._unused_bundles[entry["device_id"]] = entry

    def _ensure_session(self, device_id: str, user_id: int) -> vodozemac.Session:
        if self.olm_sessions.get(device_id):
            return self.olm_sessions[device_id][-1]
        if device_id not in self._unused_bundles:
            self._claim(user_id)
        entry = self._unused_bundles.pop(device_id)
        identity = vodozemac.Curve25519PublicKey.from_base64(entry["identity_key"])
        one_time = vodozemac.Curve25519PublicKey.from_base64(entry["one_time_prekey"]["public_key"])
        session = self.olm.account.create_outbound_session(identity, one_time)
        self.olm_sessions[device_id] = [session]
        return session

    def _olm_encrypt(self, device_id: str, user_id: int, plaintext: bytes) -> dict:
        message_type, body = self._ensure_session(device_id, user_id).encrypt(plaintext).to_parts()
        return {"device_id": device_id, "ciphertext": b64e(body), "message_type": message_type}

    def _olm_decrypt(self, sender_device_id: str, sender_user_id: int, envelope: dict) -> bytes:
        message = vodozemac.AnyOlmMessage.from_parts(envelope["message_type"], b64d(envelope["ciphertext"]))
        sessions = self.olm_sessions.setdefault(sender_device_id, [])
        pre_key = message.to_pre_key()
        for session in list(reversed(sessions)):
            if pre_key is not None and not session.session_matches(pre_key):
                continue
            try:
                plaintext = session.decrypt(message)
            except Exception:  # noqa: BLE001, S112 (vodozemac's decryption errors: try the next session)
                continue
            sessions.remove(session)
            sessions.append(session)
            return plaintext
        assert pre_key is not None, f"{self.name}: no Olm session decrypts {sender_device_id}'s envelope"
        if sender_device_id not in self.identity_keys:
            self._claim(sender_user_id)  # a real client would query device keys; this is the public API
        identity = vodozemac.Curve25519PublicKey.from_base64(self.identity_keys[sender_device_id])
        session, plaintext = self.olm.account.create_inbound_session(identity, pre_key)
        sessions.append(session)
        return plaintext

    # --- Megolm: sending ------------------------------------------------------------------------

    def sender_key(self, group_id: str) -> vodozemac.GroupSession:
        if group_id not in self.outbound:
            self.rotate(group_id)
        return self.outbound[group_id]

    def rotate(self, group_id: str) -> vodozemac.GroupSession:
        """A new outbound Megolm session: what a sender does after the group's members change."""
        session = vodozemac.GroupSession()
        self.outbound[group_id] = session
        self.exported_keys.append(session.session_key.to_base64())
        return session

    def distribute(
        self,
        group_id: str,
        *,
        group_epoch: int | None = None,
        devices: list[tuple[int, str]] | None = None,
    ) -> tuple[int, dict]:
        """Hand my current sender key to every other member device: one Olm envelope each.

        `devices` (user id, device id) overrides the fetched device list, `group_epoch` the
        fetched epoch (both to play a client with a stale view). Returns (status, body)."""
        info = self.group(group_id)
        epoch = info["group_epoch"] if group_epoch is None else group_epoch
        if devices is None:
            devices = [(m["user_id"], d) for m in info["members"] for d in m["devices"]]
        session = self.sender_key(group_id)
        # The session key at the current ratchet index: receivers read from the next message on.
        payload = json.dumps(
            {
                "group_id": group_id,
                "sender_device_id": self.device_id,
                "session_id": session.session_id,
                "session_key": session.session_key.to_base64(),
            }
        ).encode()
        envelopes = [
            self._olm_encrypt(device_id, user_id, payload)
            for user_id, device_id in devices
            if device_id != self.device_id
        ]
        return self.request(
            "POST",
            f"/groups/{group_id}/sender-keys",
            {"group_epoch": epoch, "sender_key_id": session.session_id, "envelopes": envelopes},
        )

    def _message_body(self, group_id: str, text: str, group_epoch: int | None) -> dict:
        session = self.sender_key(group_id)
        return {
            "group_epoch": self.group(group_id)["group_epoch"] if group_epoch is None else group_epoch,
            "sender_key_id": session.session_id,
            "client_message_id": uuid.uuid4().hex,
            "ciphertext": session.encrypt(text.encode()).to_base64(),
        }

    def send(self, group_id: str, text: str, *, group_epoch: int | None = None) -> tuple[int, dict]:
        """Megolm-encrypt once for the whole group and POST it. Returns (status, body)."""
        return self.request(
            "POST", f"/groups/{group_id}/messages", self._message_body(group_id, text, group_epoch)
        )

    async def send_ws(self, group_id: str, text: str, *, group_epoch: int | None = None) -> dict:
        """The same send as a `group.send` frame; returns the `group.sent` (or `error`) reply."""
        ref = uuid.uuid4().hex[:8]
        body = self._message_body(group_id, text, group_epoch)
        await self.ws.send(json.dumps({"type": "group.send", "ref": ref, "group_id": group_id, **body}))
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
            if frame.get("ref") == ref and frame["type"] in ("group.sent", "error"):
                return frame
            self._stash.append(frame)

    # --- receiving ------------------------------------------------------------------------------

    async def _read(self, timeout: float) -> dict:
        if self._stash:
            return self._stash.popleft()
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def _next_of_type(self, frame_type: str, timeout: float) -> dict:
        while True:
            frame = await self._read(timeout)
            if frame["type"] == frame_type:
                return frame

    def handle(self, frame: dict) -> None:
        """Process one frame: keep it, and decrypt a group.message (dropping a repeated seq)."""
        self.frames.append(frame)
        if frame["type"] != "group.message":
            return
        group_id = frame["group_id"]
        if frame["seq"] <= self.last_seq.get(group_id, 0):
            return  # live frames and a sync may repeat
        self.last_seq[group_id] = frame["seq"]
        if frame["proto"] == PROTO_SENDER_KEY:
            self._take_key(frame)
        elif frame["proto"] == PROTO_MESSAGE:
            self._pending.append(frame)
        self._decrypt_pending()

    def _take_key(self, frame: dict) -> None:
        assert frame["envelope"] is not None and frame["ciphertext"] == "", frame
        plaintext = self._olm_decrypt(frame["sender_device_id"], frame["sender_user_id"], frame["envelope"])
        key = json.loads(plaintext)
        # The Olm channel authenticates the sending device; the payload must match the frame.
        assert key["group_id"] == frame["group_id"], (key, frame)
        assert key["sender_device_id"] == frame["sender_device_id"], (key, frame)
        assert key["session_id"] == frame["sender_key_id"], (key, frame)
        inbound = vodozemac.InboundGroupSession(vodozemac.SessionKey(key["session_key"]))
        assert inbound.session_id == key["session_id"]
        self.inbound[(frame["sender_device_id"], key["session_id"])] = inbound
        self.keys_received.append(
            {
                "group_id": frame["group_id"],
                "seq": frame["seq"],
                "sender_device_id": frame["sender_device_id"],
                "session_id": key["session_id"],
                "group_epoch": frame["group_epoch"],
            }
        )

    def _decrypt_pending(self) -> None:
        waiting = []
        for frame in self._pending:
            inbound = self.inbound.get((frame["sender_device_id"], frame["sender_key_id"]))
            if inbound is None:
                waiting.append(frame)
                continue
            decrypted = inbound.decrypt(vodozemac.MegolmMessage.from_base64(frame["ciphertext"]))
            self.plaintexts.append(
                (frame["group_id"], frame["sender_device_id"], decrypted.plaintext.decode())
            )
        self._pending = waiting

    async def receive_until(self, done: Callable[[MegolmDevice], bool], timeout: float = 10) -> None:
        """Read and process frames until `done(self)`; fails after `timeout` seconds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not done(self):
            left = deadline - asyncio.get_running_loop().time()
            assert left > 0, f"{self.name}: timed out; pending={self._pending} frames={self.frames[-5:]}"
            try:
                self.handle(await self._read(left))
            except TimeoutError:
                continue

    async def receive_for(self, seconds: float) -> list[dict]:
        """Read and process every frame that arrives within `seconds`; returns them."""
        start = len(self.frames)
        deadline = asyncio.get_running_loop().time() + seconds
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                self.handle(await self._read(left))
            except TimeoutError:
                break
        return self.frames[start:]
