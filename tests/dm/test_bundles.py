"""GET /e2ee/bundles/{user_id}: one claimed one-time prekey per active device, oldest first, the
flagged fallback when a pool is empty, rate limits per pair, blocks, and keys.low on the stream."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import timedelta

import pytest
import redis
import vodozemac
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from chatsite.accounts import services as account_services
from chatsite.realtime import device_bus
from chatsite.realtime.names import device_group
from dm.models import Device, KeyBundle, OneTimePrekey
from tests.conftest import assert_api_error
from tests.dm.helpers import session_client
from tests.dm.olm_client import b64d, register_device
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _target(n_prekeys: int = 20, *, fallback: bool = True, devices: int = 1):
    """A user with `devices` registered devices; returns (user, [(OlmDevice, device_id)])."""
    user = UserFactory()
    made = []
    for i in range(devices):
        client, _ = session_client(user)
        device, body = register_device(client, n_prekeys=n_prekeys, fallback=fallback, name=f"device {i}")
        made.append((device, body["device_id"]))
    return user, made


def _remaining(device_id) -> int:
    return KeyBundle.objects.get(pk=device_id).prekeys_remaining


def test_bundle_shape_and_oldest_key_first():
    target, [(device, device_id)] = _target(5)
    uploaded = list(
        OneTimePrekey.objects.filter(device_id=device_id).order_by("id").values("key_id", "public_key")
    )
    fetcher, _ = session_client(UserFactory())

    resp = fetcher.get(f"/e2ee/bundles/{target.pk}")

    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert set(body) == {"user_id", "devices", "exhausted_devices"}
    assert body["user_id"] == target.pk and body["exhausted_devices"] == []
    [entry] = body["devices"]
    assert set(entry) == {
        "device_id",
        "identity_key",
        "signing_key",
        "signed_prekey",
        "signed_prekey_stale",
        "one_time_prekey",
        "fallback",
    }
    assert entry["device_id"] == device_id
    assert entry["identity_key"] == device.identity_key and entry["signing_key"] == device.signing_key
    assert set(entry["signed_prekey"]) == {"key_id", "public_key", "signature"}
    assert entry["one_time_prekey"] == uploaded[0] and entry["fallback"] is False
    assert entry["signed_prekey_stale"] is False
    # The signature verifies as any client would check it.
    Ed25519PublicKey.from_public_bytes(b64d(entry["signing_key"])).verify(
        b64d(entry["signed_prekey"]["signature"]), b64d(entry["signed_prekey"]["public_key"])
    )
    assert _remaining(device_id) == 4
    assert not OneTimePrekey.objects.filter(device_id=device_id, key_id=uploaded[0]["key_id"]).exists()

    second = fetcher.get(f"/e2ee/bundles/{target.pk}").json()["devices"][0]["one_time_prekey"]
    assert second == uploaded[1]
    assert _remaining(device_id) == 3 == OneTimePrekey.objects.filter(device_id=device_id).count()


def test_claimed_key_opens_a_real_olm_session_with_the_device():
    target, [(bob, device_id)] = _target(3)
    fetcher, _ = session_client(UserFactory())
    entry = fetcher.get(f"/e2ee/bundles/{target.pk}").json()["devices"][0]

    alice = vodozemac.Account()
    outbound = alice.create_outbound_session(
        vodozemac.Curve25519PublicKey.from_base64(entry["identity_key"]),
        vodozemac.Curve25519PublicKey.from_base64(entry["one_time_prekey"]["public_key"]),
    )
    pre_key = outbound.encrypt(b"hello bob").to_pre_key()
    _, plaintext = bob.account.create_inbound_session(alice.curve25519_key, pre_key)
    assert plaintext == b"hello bob"


def test_every_active_device_gets_one_key_and_the_requesting_device_is_left_out():
    target, made = _target(4, devices=3)
    fetcher, _ = session_client(UserFactory())
    body = fetcher.get(f"/e2ee/bundles/{target.pk}").json()
    assert [d["device_id"] for d in body["devices"]] == [device_id for _, device_id in made]
    assert all(_remaining(device_id) == 3 for _, device_id in made)

    # Fetching your own user's bundle (to encrypt for your other devices) skips your own device.
    own_client, own_session = session_client(target)
    _, own = register_device(own_client, n_prekeys=4)
    own_ids = [d["device_id"] for d in own_client.get(f"/e2ee/bundles/{target.pk}").json()["devices"]]
    assert own["device_id"] not in own_ids and len(own_ids) == 3
    assert _remaining(own["device_id"]) == 4


def test_empty_pool_returns_the_flagged_fallback_key():
    target, [(device, device_id)] = _target(1)
    fallback = KeyBundle.objects.get(pk=device_id)
    fetcher, _ = session_client(UserFactory())

    first = fetcher.get(f"/e2ee/bundles/{target.pk}").json()["devices"][0]
    assert first["fallback"] is False
    for _ in range(2):  # the fallback key is reusable
        entry = fetcher.get(f"/e2ee/bundles/{target.pk}").json()["devices"][0]
        assert entry["fallback"] is True
        assert entry["one_time_prekey"] == {
            "key_id": fallback.fallback_key_id,
            "public_key": fallback.fallback_key,
        }
    assert _remaining(device_id) == 0


def test_no_keys_and_no_fallback_is_409_prekeys_exhausted():
    target, [(_, device_id)] = _target(0, fallback=False)
    fetcher, _ = session_client(UserFactory())
    body = assert_api_error(fetcher.get(f"/e2ee/bundles/{target.pk}"), code="PREKEYS_EXHAUSTED", status=409)
    assert body["exhausted_devices"] == [device_id]


def test_only_some_devices_exhausted_returns_the_others_and_lists_them():
    target = UserFactory()
    _, ok = register_device(session_client(target)[0], n_prekeys=2)
    _, empty = register_device(session_client(target)[0], n_prekeys=0, fallback=False)
    fetcher, _ = session_client(UserFactory())
    resp = fetcher.get(f"/e2ee/bundles/{target.pk}")
    assert resp.status_code == 200
    assert [d["device_id"] for d in resp.json()["devices"]] == [ok["device_id"]]
    assert resp.json()["exhausted_devices"] == [empty["device_id"]]
    assert _remaining(ok["device_id"]) == 1


def test_user_without_devices_has_an_empty_bundle_and_unknown_user_is_404():
    user = UserFactory()
    fetcher, _ = session_client(UserFactory())
    assert fetcher.get(f"/e2ee/bundles/{user.pk}").json() == {
        "user_id": user.pk,
        "devices": [],
        "exhausted_devices": [],
    }
    assert_api_error(fetcher.get("/e2ee/bundles/987654321"), code="NOT_FOUND", status=404)


@override_settings(E2EE_BUNDLE_FETCHES_PER_PAIR_PER_HOUR=3)
def test_bundle_fetches_are_rate_limited_per_requester_and_target_device_pair():
    target, [(_, device_id)] = _target(20)
    fetcher, _ = session_client(UserFactory())
    register_device(fetcher)  # the requester is a device
    for _ in range(3):
        assert fetcher.get(f"/e2ee/bundles/{target.pk}").status_code == 200

    resp = fetcher.get(f"/e2ee/bundles/{target.pk}")

    body = assert_api_error(resp, code="RATE_LIMITED", status=429)
    assert body["retry_in_seconds"] >= 1
    assert int(resp["X-Retry-After"]) == body["retry_in_seconds"]
    assert _remaining(device_id) == 17  # the refused fetch claimed nothing
    # Another requesting user (same target) has its own budget, and so does a new target device.
    other, _ = session_client(UserFactory())
    assert other.get(f"/e2ee/bundles/{target.pk}").status_code == 200
    register_device(session_client(target)[0])
    resp = fetcher.get(f"/e2ee/bundles/{target.pk}")
    assert resp.status_code == 429  # the old pair is still over its limit


@override_settings(E2EE_BUNDLE_FETCHES_PER_PAIR_PER_HOUR=1)
def test_new_target_device_is_a_new_pair():
    target, [(_, first_id)] = _target(5)
    fetcher, _ = session_client(UserFactory())
    assert fetcher.get(f"/e2ee/bundles/{target.pk}").status_code == 200
    client, _ = session_client(target)
    client.delete(f"/e2ee/devices/{first_id}")
    _, second = register_device(client, n_prekeys=5)
    resp = fetcher.get(f"/e2ee/bundles/{target.pk}")
    assert resp.status_code == 200 and [d["device_id"] for d in resp.json()["devices"]] == [
        second["device_id"]
    ]


@override_settings(E2EE_BUNDLE_FETCHES_PER_PAIR_PER_HOUR=1)
def test_a_refused_fetch_charges_no_pair():
    target, [(_, first_id)] = _target(5)
    fetcher, _ = session_client(UserFactory())
    assert fetcher.get(f"/e2ee/bundles/{target.pk}").status_code == 200
    _, second = register_device(session_client(target)[0], n_prekeys=5)
    # List the fresh pair first, so a check that charged pairs one by one would charge it before
    # reaching the pair that is over its limit.
    Device.objects.filter(pk=second["device_id"]).update(created_at=timezone.now() - timedelta(days=1))
    # The old pair is over its limit: the whole fetch is refused, and the new pair is not charged.
    assert fetcher.get(f"/e2ee/bundles/{target.pk}").status_code == 429
    client, _ = session_client(target)
    client.delete(f"/e2ee/devices/{first_id}")
    resp = fetcher.get(f"/e2ee/bundles/{target.pk}")
    assert resp.status_code == 200
    assert [d["device_id"] for d in resp.json()["devices"]] == [second["device_id"]]


@override_settings(E2EE_BUNDLE_FETCHES_PER_PAIR_PER_HOUR=3)
def test_new_log_ins_share_the_requesters_budget_and_cannot_drain_the_pool():
    # The reproduction: each log-in (a session without a device) used to get its own budget.
    target, [(_, device_id)] = _target(20)
    requester = UserFactory()
    for _ in range(3):
        fresh, _ = session_client(requester)
        assert fresh.get(f"/e2ee/bundles/{target.pk}").status_code == 200

    fresh, _ = session_client(requester)
    assert_api_error(fresh.get(f"/e2ee/bundles/{target.pk}"), code="RATE_LIMITED", status=429)
    assert _remaining(device_id) == 17 == OneTimePrekey.objects.filter(device_id=device_id).count()


@override_settings(E2EE_BUNDLE_FETCHES_PER_PAIR_PER_HOUR=2)
def test_new_devices_of_the_requester_do_not_reset_the_budget():
    target, [(_, device_id)] = _target(20)
    requester = UserFactory()
    first, _ = session_client(requester)
    register_device(first)
    assert first.get(f"/e2ee/bundles/{target.pk}").status_code == 200
    deviceless, _ = session_client(requester)
    assert deviceless.get(f"/e2ee/bundles/{target.pk}").status_code == 200

    for _ in range(2):  # each new log-in registers a new device: still the same user's budget
        fresh, _ = session_client(requester)
        register_device(fresh)
        assert_api_error(fresh.get(f"/e2ee/bundles/{target.pk}"), code="RATE_LIMITED", status=429)
    assert_api_error(first.get(f"/e2ee/bundles/{target.pk}"), code="RATE_LIMITED", status=429)
    assert _remaining(device_id) == 18


def test_disabled_users_bundle_is_404_like_an_unknown_user_and_claims_nothing():
    target, [(_, device_id)] = _target(5)
    fetcher, _ = session_client(UserFactory())
    account_services.account_disable(user=target, reason="compromised")

    body = assert_api_error(fetcher.get(f"/e2ee/bundles/{target.pk}"), code="NOT_FOUND", status=404)
    unknown = assert_api_error(fetcher.get("/e2ee/bundles/987654321"), code="NOT_FOUND", status=404)
    assert body == unknown  # nothing tells a disabled account from one that does not exist
    assert _remaining(device_id) == 5 == OneTimePrekey.objects.filter(device_id=device_id).count()

    # Re-enabled, the same device's keys are handed out again.
    account_services.account_enable(user=target)
    assert fetcher.get(f"/e2ee/bundles/{target.pk}").status_code == 200
    assert _remaining(device_id) == 4


def test_blocked_requester_gets_403_blocked():
    target, [(_, device_id)] = _target(3)
    blocked_user = UserFactory()
    fetcher, _ = session_client(blocked_user)
    account_services.block_add(blocker=target, user_id=blocked_user.pk)
    assert_api_error(fetcher.get(f"/e2ee/bundles/{target.pk}"), code="BLOCKED", status=403)
    assert _remaining(device_id) == 3
    # The block is one-way: the target may still fetch the blocked user's keys.
    register_device(session_client(blocked_user)[0])
    assert session_client(target)[0].get(f"/e2ee/bundles/{blocked_user.pk}").status_code == 200


def test_stale_signed_prekey_is_reported_in_the_bundle():
    target, [(_, device_id)] = _target(3)
    KeyBundle.objects.filter(pk=device_id).update(
        signed_prekey_uploaded_at=timezone.now() - timedelta(days=91)
    )
    fetcher, _ = session_client(UserFactory())
    assert fetcher.get(f"/e2ee/bundles/{target.pk}").json()["devices"][0]["signed_prekey_stale"] is True


def test_revoked_devices_never_appear():
    target, made = _target(3, devices=2)
    client, _ = session_client(target)
    assert client.delete(f"/e2ee/devices/{made[0][1]}").status_code == 204
    fetcher, _ = session_client(UserFactory())
    assert [d["device_id"] for d in fetcher.get(f"/e2ee/bundles/{target.pk}").json()["devices"]] == [
        made[1][1]
    ]


# --- keys.low (through the device bus) and stream close (through the channel layer) --------


def _listen(device_id) -> str:
    layer = get_channel_layer()
    channel = f"test.{uuid.uuid4().hex}"
    async_to_sync(layer.group_add)(device_group(device_id), channel)
    return channel


def _receive(channel: str, timeout: float = 5.0) -> dict | None:
    layer = get_channel_layer()

    async def receive():
        try:
            return await asyncio.wait_for(layer.receive(channel), timeout)
        except TimeoutError:
            return None

    return async_to_sync(receive)()


def _listen_events(device_id):
    """Subscribe, as another process's stream of the device would, to its device-bus channel."""
    pubsub = redis.Redis.from_url(settings.REDIS_URL).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(device_bus.channel(device_id))
    return pubsub


def _receive_event(pubsub, timeout: float = 5.0) -> dict | None:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        message = pubsub.get_message(timeout=left)
        if message is not None:
            return json.loads(message["data"])
    return None


@pytest.mark.django_db(transaction=True)
def test_keys_low_is_published_when_the_pool_falls_to_the_watermark():
    target, [(_, device_id)] = _target(12)
    events = _listen_events(device_id)
    fetcher, _ = session_client(UserFactory())

    assert fetcher.get(f"/e2ee/bundles/{target.pk}").status_code == 200  # 12 -> 11: not low yet
    assert _receive_event(events, timeout=0.5) is None

    assert fetcher.get(f"/e2ee/bundles/{target.pk}").status_code == 200  # 11 -> 10
    message = _receive_event(events)
    assert message is not None and message["type"] == "realtime.event" and message["source"] == "dm"
    assert message["frame"] == {"type": "keys.low", "device_id": device_id, "prekeys_remaining": 10}


@pytest.mark.django_db(transaction=True)
def test_no_keys_low_when_the_claim_rolls_back():
    target, [(_, device_id)] = _target(0, fallback=False)
    events = _listen_events(device_id)
    fetcher, _ = session_client(UserFactory())
    assert fetcher.get(f"/e2ee/bundles/{target.pk}").status_code == 409
    assert _receive_event(events, timeout=0.5) is None


@pytest.mark.django_db(transaction=True)
def test_revoke_closes_the_devices_streams_after_commit():
    client, _ = session_client(UserFactory())
    _, body = register_device(client)
    channel = _listen(body["device_id"])
    assert client.delete(f"/e2ee/devices/{body['device_id']}").status_code == 204
    message = _receive(channel)
    assert message == {
        "type": "realtime.control",
        "action": "close",
        "code": 4403,
        "reason": "device revoked",
    }
