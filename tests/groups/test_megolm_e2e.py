"""End to end with a real Megolm client library (vodozemac) against a live daphne server.

Alice, Bob and Carol (two devices) each hand their Megolm sender key to every other member
device over Olm, each sends, and every other device decrypts exactly what was sent, live over its
WebSocket; the database holds only ciphertext. Then Alice removes Carol: the epoch moves, a send
or a distribution made with the old view is refused, Alice and Bob hand NEW Megolm sessions to
each other only, and Carol's devices get neither a key nor a message (and cannot read the page).
"""

from __future__ import annotations

import contextlib

import pytest
import vodozemac
from channels.db import database_sync_to_async
from django.db import connection

from tests.dm.olm_client import b64e
from tests.groups.megolm_client import MegolmDevice, create_account, login
from tests.live import live_daphne

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live_server_process]

QUIET_WAIT = 1.5  # seconds a removed member's devices are watched for frames that must not come


@database_sync_to_async
def rows_containing(needle: str) -> dict[str, int]:
    """How many rows of each group message table contain `needle` anywhere (whole row as text)."""
    counts = {}
    with connection.cursor() as cursor:
        for table in ("group_messages", "group_sender_keys", "group_sender_key_envelopes"):
            cursor.execute(f"SELECT count(*) FROM {table} t WHERE strpos(t::text, %s) > 0", [needle])  # noqa: S608
            counts[table] = cursor.fetchone()[0]
    return counts


@database_sync_to_async
def envelope_devices(sender_key_id: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT e.device_id::text FROM group_sender_key_envelopes e "
            "JOIN group_sender_keys k ON k.id = e.sender_key_id WHERE k.sender_key_id = %s "
            "ORDER BY 1",
            [sender_key_id],
        )
        return [row[0] for row in cursor.fetchall()]


@database_sync_to_async
def stored_ciphertext(message_id) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT ciphertext FROM group_messages WHERE id = %s", [message_id])
        return cursor.fetchone()[0]


def expected_for(reader: MegolmDevice, sent: list[tuple[MegolmDevice, str]], group_id: str):
    return [(group_id, sender.device_id, text) for sender, text in sent if sender is not reader]


async def test_megolm_group_members_decrypt_each_other_and_a_removed_member_gets_nothing_new():
    with live_daphne() as server:
        alice_id, alice_token = create_account(server, "alice")
        bob_id, bob_token = create_account(server, "bob")
        carol_id, carol_token = create_account(server, "carol")
        _, carol_token2 = login(server, "carol")  # Carol's second device has its own session
        alice = MegolmDevice(server, "alice-phone", alice_id, alice_token).register()
        bob = MegolmDevice(server, "bob-phone", bob_id, bob_token).register()
        carol = MegolmDevice(server, "carol-phone", carol_id, carol_token).register()
        carol2 = MegolmDevice(server, "carol-laptop", carol_id, carol_token2).register()
        everyone = [alice, bob, carol, carol2]

        status, group = alice.request("POST", "/groups", {"title": "e2e"})
        assert status == 201, group
        gid = group["id"]
        for user_id in (bob_id, carol_id):
            status, body = alice.request("POST", f"/groups/{gid}/members", {"user_id": user_id})
            assert status == 201, body
        info = alice.group(gid)
        assert {m["user_id"]: sorted(m["devices"]) for m in info["members"]} == {
            alice_id: [alice.device_id],
            bob_id: [bob.device_id],
            carol_id: sorted([carol.device_id, carol2.device_id]),
        }
        epoch_before = info["group_epoch"]

        async with contextlib.AsyncExitStack() as stack:
            for device in everyone:
                await device.connect()
                stack.push_async_callback(device.close)

            # --- 1. Everyone hands its sender key to every other device, then everyone sends. -----
            # All distribute before anyone reads: pairs open Olm sessions from both ends at once.
            for device in everyone:
                status, body = device.distribute(gid)
                assert status == 201, (device.name, body)
                assert body["proto"] == 11 and body["recipients"] == 3, body
            sent: list[tuple[MegolmDevice, str]] = []
            for device, text in [
                (alice, "hello from alice 👋"),
                (bob, "bob here, all good"),
                (carol, "carol on the phone"),
                (carol2, "carol on the laptop"),
                (alice, "alice again: second message"),
            ]:
                status, body = device.send(gid, text)
                assert status == 201, (device.name, body)
                assert body["proto"] == 1 and body["recipients"] == 3, body
                sent.append((device, text))
            # One over the WebSocket too (group.send -> group.sent).
            reply = await bob.send_ws(gid, "bob over the websocket")
            assert reply["type"] == "group.sent" and reply["recipients"] == 3, reply
            sent.append((bob, "bob over the websocket"))

            for device in everyone:
                want = expected_for(device, sent, gid)
                count = len(want)
                await device.receive_until(lambda d, n=count: len(d.plaintexts) >= n)
                assert device.plaintexts == want, device.name  # exactly these, in send order
                assert sorted(k["sender_device_id"] for k in device.keys_received) == sorted(
                    d.device_id for d in everyone if d is not device
                )

            # The server stored ciphertext only: no plaintext, no base64 of it, no Megolm key.
            # (Positive control: the search does find what is stored, e.g. a message's ciphertext.)
            assert (await rows_containing(bob.outbound[gid].session_id))["group_sender_keys"] == 1
            ws_ciphertext = await stored_ciphertext(reply["message_id"])
            assert (await rows_containing(ws_ciphertext))["group_messages"] == 1
            for _sender, text in sent:
                for needle in (text, b64e(text.encode())):
                    assert await rows_containing(needle) == {
                        "group_messages": 0,
                        "group_sender_keys": 0,
                        "group_sender_key_envelopes": 0,
                    }, needle
            for device in everyone:
                for session_key in device.exported_keys:
                    assert set((await rows_containing(session_key)).values()) == {0}

            # --- 2. Alice removes Carol: the epoch moves and everyone (Carol too) is told. ---------
            old_alice_session = alice.outbound[gid]
            carol_old_inbound = carol.inbound[(alice.device_id, old_alice_session.session_id)]
            status, body = alice.request("DELETE", f"/groups/{gid}/members/{carol_id}")
            assert status == 204, body
            info = alice.group(gid)
            new_epoch = info["group_epoch"]
            assert new_epoch == epoch_before + 1
            assert {m["user_id"] for m in info["members"]} == {alice_id, bob_id}
            for device in everyone:
                await device.receive_until(
                    lambda d: any(
                        f["type"] == "group.epoch" and f["group_epoch"] == new_epoch for f in d.frames
                    )
                )

            # A send at the old epoch: 409 EPOCH_STALE naming Carol as removed.
            status, body = alice.send(gid, "must not go out", group_epoch=epoch_before)
            assert status == 409 and body["code"] == "EPOCH_STALE", body
            assert body["group_epoch"] == new_epoch
            assert [c["user_id"] for c in body["changes"]["members_removed"]] == [carol_id]
            assert body["changes"]["members_added"] == []
            # The old sender key at the new epoch: 409 SENDER_KEY_REQUIRED (it was for the old one).
            status, body = bob.send(gid, "old key, new epoch")
            assert status == 409 and body["code"] == "SENDER_KEY_REQUIRED", body

            # Alice rotates. A distribution that still includes Carol's devices: DEVICE_MISMATCH.
            new_alice_session = alice.rotate(gid)
            stale_view = [(bob_id, bob.device_id), (carol_id, carol.device_id), (carol_id, carol2.device_id)]
            status, body = alice.distribute(gid, devices=stale_view)
            assert status == 409 and body["code"] == "DEVICE_MISMATCH", body
            assert body["extra_devices"] == sorted([carol.device_id, carol2.device_id])
            assert body["missing_devices"] == [] and body["revoked_devices"] == []
            assert await envelope_devices(new_alice_session.session_id) == []  # nothing stored

            # Alice redistributes the NEW session to the current members (Bob only), then sends.
            status, body = alice.distribute(gid)
            assert status == 201 and body["recipients"] == 1 and body["group_epoch"] == new_epoch, body
            assert await envelope_devices(new_alice_session.session_id) == [bob.device_id]
            status, alice_after = alice.send(gid, "after carol left")
            assert status == 201 and alice_after["recipients"] == 1, alice_after

            # Bob rotates too and hands his new key to Alice only.
            bob.rotate(gid)
            status, body = bob.distribute(gid)
            assert status == 201 and body["recipients"] == 1, body
            assert await envelope_devices(bob.outbound[gid].session_id) == [alice.device_id]
            status, body = bob.send(gid, "bob after carol left")
            assert status == 201 and body["recipients"] == 1, body

            await bob.receive_until(lambda d: len(d.plaintexts) >= len(expected_for(bob, sent, gid)) + 1)
            assert bob.plaintexts[-1] == (gid, alice.device_id, "after carol left")
            assert bob.keys_received[-1]["session_id"] == new_alice_session.session_id
            assert bob.keys_received[-1]["group_epoch"] == new_epoch
            await alice.receive_until(lambda d: len(d.plaintexts) >= len(expected_for(alice, sent, gid)) + 1)
            assert alice.plaintexts[-1] == (gid, bob.device_id, "bob after carol left")

            # Carol's devices: no group.message at all since the removal, neither key nor message.
            for device in (carol, carol2):
                seen_before = device.last_seq.get(gid)
                late = await device.receive_for(QUIET_WAIT)
                assert [f for f in late if f["type"] == "group.message"] == [], (device.name, late)
                assert device.last_seq.get(gid) == seen_before
                assert len(device.plaintexts) == len(expected_for(device, sent, gid))
                assert all(k["group_epoch"] == epoch_before for k in device.keys_received)
            # Even holding the ciphertext, Carol's old keys do not open Alice's new session.
            with pytest.raises(Exception):  # noqa: B017, PT011 (vodozemac's MegolmDecryptionError)
                carol_old_inbound.decrypt(
                    vodozemac.MegolmMessage.from_base64(await stored_ciphertext(alice_after["message_id"]))
                )

            # And the history is closed to her: 403 NOT_MEMBER on the page, from either device.
            for device in (carol, carol2):
                status, body = device.request("GET", f"/groups/{gid}/messages?since=0")
                assert status == 403 and body["code"] == "NOT_MEMBER", body

            # Still ciphertext only, after the rekey.
            for needle in ("after carol left", "bob after carol left"):
                assert set((await rows_containing(needle)).values()) == {0}
            for device in (alice, bob):
                for session_key in device.exported_keys:
                    assert set((await rows_containing(session_key)).values()) == {0}
