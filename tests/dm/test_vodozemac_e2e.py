"""End to end with a real Olm client library (vodozemac) against a live daphne server: keys are
published and fetched in the formats the library prints, a session opens from a claimed one-time
key, and ciphertext crosses REST, WebSocket and the polling fetch without the server reading it."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect

from tests.dm.olm_client import OlmDevice, new_client_message_id
from tests.live import live_daphne

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live_server_process]

PASSWORD = "correct horse battery staple"


def _account(server, username: str) -> tuple[int, str]:
    status, body = server.request("POST", "/auth/register", {"username": username, "password": PASSWORD})
    assert status == 201, body
    status, body = server.request("POST", "/auth/login", {"username": username, "password": PASSWORD})
    assert status == 200, body
    return body["user_id"], body["token"]


def _register(server, token: str, device: OlmDevice) -> None:
    status, body = server.request("POST", "/e2ee/devices", device.registration(), token=token)
    assert status == 201, body
    device.device_id = body["device_id"]


async def _next_frame(ws, frame_type: str) -> dict:
    while True:
        frame = json.loads(await ws.recv())
        if frame["type"] == frame_type:
            return frame


async def test_two_vodozemac_clients_exchange_messages_through_the_server():
    with live_daphne() as server:
        alice_id, alice_token = _account(server, "alice")
        bob_id, bob_token = _account(server, "bob")
        alice, bob = OlmDevice("alice-phone"), OlmDevice("bob-phone")
        _register(server, alice_token, alice)
        _register(server, bob_token, bob)

        async with connect(
            server.ws + "/ws", additional_headers={"Authorization": f"Bearer {bob_token}"}
        ) as bob_ws:
            hello = await _next_frame(bob_ws, "hello")
            assert hello["device_id"] == bob.device_id

            # Alice claims Bob's bundle and opens an Olm session from his one-time key.
            status, bundle = server.request("GET", f"/e2ee/bundles/{bob_id}", token=alice_token)
            assert status == 200, bundle
            (bob_entry,) = bundle["devices"]
            assert bob_entry["fallback"] is False
            alice.open_session(bob_entry)
            status, conversation = server.request(
                "POST", "/dm/conversations", {"user_id": bob_id}, token=alice_token
            )
            assert status in (200, 201), conversation
            status, sent = server.request(
                "POST",
                f"/dm/conversations/{conversation['id']}/messages",
                {
                    "client_message_id": new_client_message_id(),
                    "envelopes": [alice.envelope(bob.device_id, "hello bob 👋".encode())],
                },
                token=alice_token,
            )
            assert status == 201, sent

            # Bob gets it live on his WebSocket and decrypts it with Alice's published identity key.
            frame = await _next_frame(bob_ws, "dm.message")
            status, alice_bundle = server.request("GET", f"/e2ee/bundles/{alice_id}", token=bob_token)
            assert status == 200, alice_bundle
            alice_identity = alice_bundle["devices"][0]["identity_key"]
            assert bob.decrypt(frame, alice_identity) == "hello bob 👋".encode()
            await bob_ws.send(json.dumps({"type": "dm.ack", "up_to": frame["cursor"], "ref": "a1"}))
            acked = await _next_frame(bob_ws, "dm.acked")
            assert acked == {"type": "dm.acked", "acknowledged": 1, "ref": "a1"}

            # Bob replies over the WebSocket with a dm.send frame on the same session.
            await bob_ws.send(
                json.dumps(
                    {
                        "type": "dm.send",
                        "ref": "s1",
                        "conversation_id": conversation["id"],
                        "client_message_id": new_client_message_id(),
                        "envelopes": [bob.envelope(alice.device_id, b"hi alice")],
                    }
                )
            )
            reply = await _next_frame(bob_ws, "dm.sent")
            assert reply["ref"] == "s1" and reply["duplicate"] is False

        # Alice was offline: she polls her device queue and decrypts the reply.
        status, queue = server.request("GET", "/dm/messages?since=0", token=alice_token)
        assert status == 200, queue
        (message,) = queue["messages"]
        assert message["sender_device_id"] == bob.device_id
        assert alice.decrypt(message, bob_entry["identity_key"]) == b"hi alice"
