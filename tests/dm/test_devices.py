"""E2EE devices: registration with real vodozemac keys, key uploads, rotation, revocation, the
admin action, and the seed-001 runbook SQL against our schema."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone

from chatsite.accounts.models import SecurityEvent, Session
from chatsite.api.errors import ApiError
from dm.keys import b64_decode_exact
from dm.models import Conversation, Delivery, Device, DeviceQueue, KeyBundle, Message, OneTimePrekey
from dm.selectors import devices as selectors
from dm.services import devices as services
from tests.conftest import assert_api_error
from tests.dm.helpers import session_client
from tests.dm.olm_client import OlmDevice, b64d, b64e, register_device
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _register(client, device: OlmDevice | None = None, **kwargs):
    device = device or OlmDevice()
    return device, client.post("/e2ee/devices", device.registration(**kwargs), format="json")


def _tampered(signature: str) -> str:
    raw = bytearray(b64d(signature))
    raw[0] ^= 1
    return b64e(bytes(raw))


# --- Registration ---------------------------------------------------------------------------


def test_register_binds_the_session_and_lists_the_device():
    user = UserFactory()
    client, session = session_client(user)
    device, resp = _register(client, n_prekeys=20)

    assert resp.status_code == 201, resp.content
    body = resp.json()
    device_id = body["device_id"]
    assert body["device_name"] == "test phone"
    assert body["status"] == "active"
    assert body["identity_key"] == device.identity_key and body["signing_key"] == device.signing_key
    assert body["prekeys_remaining"] == 20 and body["current"] is True
    assert body["signed_prekey_age_days"] == 0 and body["signed_prekey_stale"] is False

    session.refresh_from_db()
    assert str(session.device_id) == device_id
    assert DeviceQueue.objects.get(device_id=device_id).last_seq == 0
    assert (
        KeyBundle.objects.get(pk=device_id).prekeys_remaining
        == OneTimePrekey.objects.filter(device_id=device_id).count()
        == 20
    )

    listed = client.get("/e2ee/devices")
    assert listed.status_code == 200
    [entry] = listed.json()["devices"]
    assert entry["device_id"] == device_id and entry["prekeys_remaining"] == 20 and entry["current"] is True
    assert entry["last_seen_at"] is not None and entry["signed_prekey_age_days"] == 0


def test_one_time_prekeys_are_stored_in_upload_order():
    client, _ = session_client(UserFactory())
    device = OlmDevice()
    payload = device.registration(n_prekeys=30)
    payload["one_time_prekeys"].reverse()  # upload order, not key-id order, decides the claim order
    resp = client.post("/e2ee/devices", payload, format="json")
    assert resp.status_code == 201
    stored = list(
        OneTimePrekey.objects.filter(device_id=resp.json()["device_id"])
        .order_by("id")
        .values_list("key_id", flat=True)
    )
    assert stored == [k["key_id"] for k in payload["one_time_prekeys"]]


def test_padded_base64_is_accepted_and_stored_unpadded():
    client, _ = session_client(UserFactory())
    device = OlmDevice()
    payload = device.registration(n_prekeys=2)
    payload["identity_key"] += "="
    payload["signed_prekey"]["public_key"] += "="
    payload["signed_prekey"]["signature"] += "=="
    resp = client.post("/e2ee/devices", payload, format="json")
    assert resp.status_code == 201, resp.content
    stored = Device.objects.get(pk=resp.json()["device_id"])
    assert stored.identity_key == device.identity_key and len(stored.identity_key) == 43
    assert len(KeyBundle.objects.get(pk=stored.pk).signed_prekey_signature) == 86


def test_a_second_registration_on_the_same_session_is_a_conflict():
    client, _ = session_client(UserFactory())
    register_device(client)
    _, resp = _register(client)
    assert_api_error(resp, code="CONFLICT", status=409)
    assert Device.objects.count() == 1


def test_registration_also_accepts_name_for_device_name():
    client, _ = session_client(UserFactory())
    payload = OlmDevice().registration(n_prekeys=1)
    payload["name"] = payload.pop("device_name")
    resp = client.post("/e2ee/devices", payload, format="json")
    assert resp.status_code == 201 and resp.json()["device_name"] == "test phone"


@pytest.mark.parametrize("which", ["signed_prekey", "fallback_key"])
def test_bad_signature_is_400_invalid_signature(which):
    client, session = session_client(UserFactory())
    payload = OlmDevice().registration(n_prekeys=3)
    payload[which]["signature"] = _tampered(payload[which]["signature"])
    body = assert_api_error(
        client.post("/e2ee/devices", payload, format="json"), code="INVALID_SIGNATURE", status=400
    )
    assert body["field"] == which
    assert Device.objects.count() == 0
    session.refresh_from_db()
    assert session.device_id is None


def test_signature_by_another_account_is_invalid():
    client, _ = session_client(UserFactory())
    device, other = OlmDevice(), OlmDevice()
    payload = device.registration(n_prekeys=1)
    payload["signed_prekey"]["signature"] = other.sign(payload["signed_prekey"]["public_key"])
    assert_api_error(
        client.post("/e2ee/devices", payload, format="json"), code="INVALID_SIGNATURE", status=400
    )


@pytest.mark.parametrize(
    ("mutate", "error_path"),
    [
        (lambda p: p.update(identity_key=b64e(b"\x01" * 31)), ("identity_key",)),
        (lambda p: p.update(signing_key=b64e(b"\x01" * 33)), ("signing_key",)),
        (
            lambda p: p["signed_prekey"].update(public_key="not base64 at all!"),
            ("signed_prekey", "public_key"),
        ),
        (lambda p: p["signed_prekey"].update(signature=b64e(b"\x02" * 63)), ("signed_prekey", "signature")),
        # URL-safe alphabet is not what vodozemac prints
        (
            lambda p: p.update(identity_key=b64e(b"\xfb\xff" * 16).replace("+", "-").replace("/", "_")),
            ("identity_key",),
        ),
        (
            lambda p: p["one_time_prekeys"][1].update(public_key=b64e(b"\x03" * 40)),
            ("one_time_prekeys", "1", "public_key"),
        ),
        (lambda p: p["one_time_prekeys"][0].update(key_id=""), ("one_time_prekeys", "0", "key_id")),
        (lambda p: p.update(identity_key=12345), ("identity_key",)),
    ],
    ids=[
        "identity-31-bytes",
        "signing-33-bytes",
        "not-base64",
        "short-signature",
        "urlsafe",
        "otpk-40-bytes",
        "empty-key-id",
        "not-a-string",
    ],
)
def test_bad_base64_or_length_is_400_validation_error(mutate, error_path):
    client, _ = session_client(UserFactory())
    payload = OlmDevice().registration(n_prekeys=3)
    mutate(payload)
    body = assert_api_error(
        client.post("/e2ee/devices", payload, format="json"), code="VALIDATION_ERROR", status=400
    )
    node = body["errors"]
    for part in error_path:
        node = node[int(part)] if isinstance(node, list) else node[part]
    assert node, body
    assert Device.objects.count() == 0


def test_non_canonical_base64_is_rejected():
    # 43 characters whose last one carries bits beyond the 32 bytes: a second spelling of a key.
    key = OlmDevice().identity_key
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    alias = key[:-1] + last[last.index(key[-1]) + 1]
    with pytest.raises(ValueError, match="canonical"):
        b64_decode_exact(alias, size=32)


def test_the_service_validates_too():
    _, session = session_client(UserFactory())
    payload = OlmDevice().registration(n_prekeys=1)
    payload["identity_key"] = "AAAA"
    with pytest.raises(ApiError) as info:
        services.device_register(
            session=session,
            name="x",
            identity_key=payload["identity_key"],
            signing_key=payload["signing_key"],
            signed_prekey=payload["signed_prekey"],
            one_time_prekeys=payload["one_time_prekeys"],
            fallback_key=None,
        )
    assert info.value.code == "VALIDATION_ERROR" and info.value.status == 400
    assert "identity_key" in info.value.extra["errors"]


@override_settings(E2EE_MAX_DEVICES_PER_USER=2)
def test_device_cap_is_409_device_limit_and_counts_active_devices_only():
    user = UserFactory()
    first, _ = session_client(user)
    second, _ = session_client(user)
    third, _ = session_client(user)
    _, first_body = register_device(first)
    register_device(second)

    body = assert_api_error(_register(third)[1], code="DEVICE_LIMIT", status=409)
    assert "maximum" in body["detail"]

    assert second.delete(f"/e2ee/devices/{first_body['device_id']}").status_code == 204
    assert _register(third)[1].status_code == 201


@override_settings(E2EE_MAX_PREKEYS_PER_UPLOAD=5)
def test_prekeys_per_upload_cap_on_register_and_upload():
    client, _ = session_client(UserFactory())
    body = assert_api_error(_register(client, n_prekeys=6)[1], code="VALIDATION_ERROR", status=400)
    assert "E2EE_MAX_PREKEYS_PER_UPLOAD" in str(body["errors"]["one_time_prekeys"])

    device, registered = register_device(client, n_prekeys=5)
    resp = client.post(
        f"/e2ee/devices/{registered['device_id']}/prekeys",
        {"one_time_prekeys": device.one_time_keys(6)},
        format="json",
    )
    assert_api_error(resp, code="VALIDATION_ERROR", status=400)
    assert KeyBundle.objects.get(pk=registered["device_id"]).prekeys_remaining == 5


def test_feature_flag_off_is_403_feature_disabled():
    client, _ = session_client(UserFactory())
    with override_settings(E2EE_DM_ENABLED=False):
        for resp in (client.get("/e2ee/devices"), _register(client)[1], client.get("/e2ee/bundles/1")):
            body = assert_api_error(resp, code="FEATURE_DISABLED", status=403)
            assert body["detail"] == "E2EE DM is not enabled"


def test_anonymous_is_401(api_client):
    assert_api_error(api_client.get("/e2ee/devices"), code="UNAUTHENTICATED", status=401)


def test_device_list_is_one_query_for_the_devices(django_assert_max_num_queries):
    user = UserFactory()
    client, _ = session_client(user)
    register_device(client)
    for _ in range(3):
        register_device(session_client(user)[0])
    # authentication (session lookup) + the devices with their bundles
    with django_assert_max_num_queries(2):
        resp = client.get("/e2ee/devices")
    assert len(resp.json()["devices"]) == 4
    assert [d["current"] for d in resp.json()["devices"]] == [True, False, False, False]


# --- Identity key changes -------------------------------------------------------------------


@override_settings(E2EE_IDENTITY_CHANGES_FLAG_PER_DAY=2)
def test_identity_key_changes_are_security_events_flagged_past_two_a_day(caplog):
    user = UserFactory()
    events = SecurityEvent.objects.filter(user=user, kind=SecurityEvent.Kind.IDENTITY_KEY_CHANGED)
    first = OlmDevice()
    first_client, _ = session_client(user)
    assert (
        first_client.post("/e2ee/devices", first.registration(n_prekeys=1), format="json").status_code == 201
    )
    assert not events.exists()  # the first device: nothing changed

    # The same identity key again (e.g. re-registration of the same account) is not a change.
    again, _ = session_client(user)
    assert again.post("/e2ee/devices", first.registration(n_prekeys=1), format="json").status_code == 201
    assert not events.exists()

    with caplog.at_level(logging.INFO, logger="chatsite.security"):
        for _ in range(3):
            register_device(session_client(user)[0])
    assert list(events.order_by("id").values_list("flagged", flat=True)) == [False, False, True]
    assert [e.data["changes_24h"] for e in events.order_by("id")] == [1, 2, 3]
    warnings = [r for r in caplog.records if r.name == "chatsite.security" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].event == "identity_key_changed"
    # No key material in the logs or in the events.
    keys = [k for d in Device.objects.filter(user=user) for k in (d.identity_key, d.signing_key)]
    logged = " ".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    stored = " ".join(str(e.data) for e in events)
    assert not any(k in logged or k in stored for k in keys)


def test_identity_change_count_is_per_24_hours():
    user = UserFactory()
    register_device(session_client(user)[0])
    register_device(session_client(user)[0])
    register_device(session_client(user)[0])
    SecurityEvent.objects.filter(user=user).update(created_at=timezone.now() - timedelta(days=2))
    register_device(session_client(user)[0])
    latest = SecurityEvent.objects.filter(user=user, kind=SecurityEvent.Kind.IDENTITY_KEY_CHANGED).latest(
        "id"
    )
    assert latest.flagged is False and latest.data["changes_24h"] == 1


# --- One-time prekey uploads ------------------------------------------------------------------


def test_prekeys_upload_increments_prekeys_remaining():
    client, _ = session_client(UserFactory())
    device, body = register_device(client, n_prekeys=20)
    resp = client.post(
        f"/e2ee/devices/{body['device_id']}/prekeys",
        {"one_time_prekeys": device.one_time_keys(10)},
        format="json",
    )
    assert resp.status_code == 200, resp.content
    assert resp.json() == {"prekeys_remaining": 30}
    assert OneTimePrekey.objects.filter(device_id=body["device_id"]).count() == 30
    assert client.get("/e2ee/devices").json()["devices"][0]["prekeys_remaining"] == 30


def test_prekeys_upload_duplicate_key_id_is_409_conflict():
    client, _ = session_client(UserFactory())
    device, body = register_device(client, n_prekeys=3)
    stored = OneTimePrekey.objects.filter(device_id=body["device_id"]).first()
    new = device.one_time_keys(2)
    new[1]["key_id"] = stored.key_id
    resp = client.post(f"/e2ee/devices/{body['device_id']}/prekeys", {"one_time_prekeys": new}, format="json")
    assert_api_error(resp, code="CONFLICT", status=409)
    assert KeyBundle.objects.get(pk=body["device_id"]).prekeys_remaining == 3
    assert OneTimePrekey.objects.filter(device_id=body["device_id"]).count() == 3


def test_prekeys_upload_duplicates_within_one_upload_are_400():
    client, _ = session_client(UserFactory())
    device, body = register_device(client, n_prekeys=1)
    new = device.one_time_keys(2)
    new[1]["key_id"] = new[0]["key_id"]
    resp = client.post(f"/e2ee/devices/{body['device_id']}/prekeys", {"one_time_prekeys": new}, format="json")
    assert_api_error(resp, code="VALIDATION_ERROR", status=400)


@override_settings(E2EE_MAX_PREKEYS_PER_DEVICE=25)
def test_prekeys_total_cap_per_device():
    client, _ = session_client(UserFactory())
    device, body = register_device(client, n_prekeys=20)
    url = f"/e2ee/devices/{body['device_id']}/prekeys"
    resp = client.post(url, {"one_time_prekeys": device.one_time_keys(6)}, format="json")
    body_err = assert_api_error(resp, code="VALIDATION_ERROR", status=400)
    assert "E2EE_MAX_PREKEYS_PER_DEVICE" in str(body_err["errors"])
    assert client.post(url, {"one_time_prekeys": device.one_time_keys(5)}, format="json").json() == {
        "prekeys_remaining": 25
    }


def test_prekeys_upload_can_replace_the_fallback_key_with_a_verified_signature():
    client, _ = session_client(UserFactory())
    device, body = register_device(client, n_prekeys=1)
    url = f"/e2ee/devices/{body['device_id']}/prekeys"
    fallback = device.signed_key(fallback=True)
    bad = dict(fallback, signature=_tampered(fallback["signature"]))
    assert_api_error(
        client.post(url, {"fallback_key": bad}, format="json"), code="INVALID_SIGNATURE", status=400
    )
    resp = client.post(url, {"fallback_key": fallback}, format="json")
    assert resp.status_code == 200 and resp.json() == {"prekeys_remaining": 1}
    bundle = KeyBundle.objects.get(pk=body["device_id"])
    assert (bundle.fallback_key_id, bundle.fallback_key) == (fallback["key_id"], fallback["public_key"])


def test_empty_upload_is_400():
    client, _ = session_client(UserFactory())
    _, body = register_device(client, n_prekeys=1)
    resp = client.post(f"/e2ee/devices/{body['device_id']}/prekeys", {"one_time_prekeys": []}, format="json")
    assert_api_error(resp, code="VALIDATION_ERROR", status=400)


def test_someone_elses_device_is_404():
    owner, _ = session_client(UserFactory())
    device, body = register_device(owner)
    intruder, _ = session_client(UserFactory())
    base = f"/e2ee/devices/{body['device_id']}"
    assert_api_error(
        intruder.post(f"{base}/prekeys", {"one_time_prekeys": device.one_time_keys(1)}, format="json"),
        code="NOT_FOUND",
        status=404,
    )
    assert_api_error(
        intruder.put(f"{base}/signed-prekey", device.signed_key(), format="json"),
        code="NOT_FOUND",
        status=404,
    )
    assert_api_error(intruder.delete(base), code="NOT_FOUND", status=404)
    assert Device.objects.get(pk=body["device_id"]).status == "active"


# --- Signed prekey rotation -------------------------------------------------------------------


def _age_signed_prekey(device_id, days: int) -> None:
    KeyBundle.objects.filter(pk=device_id).update(
        signed_prekey_uploaded_at=timezone.now() - timedelta(days=days)
    )


def test_signed_prekey_rotation_replaces_and_resets_its_age():
    client, _ = session_client(UserFactory())
    device, body = register_device(client)
    _age_signed_prekey(body["device_id"], 30)
    new = device.signed_key()
    resp = client.put(f"/e2ee/devices/{body['device_id']}/signed-prekey", new, format="json")
    assert resp.status_code == 200, resp.content
    assert resp.json()["signed_prekey"] == new
    bundle = KeyBundle.objects.get(pk=body["device_id"])
    assert (bundle.signed_prekey_id, bundle.signed_prekey, bundle.signed_prekey_signature) == (
        new["key_id"],
        new["public_key"],
        new["signature"],
    )
    assert timezone.now() - bundle.signed_prekey_uploaded_at < timedelta(minutes=1)
    assert client.get("/e2ee/devices").json()["devices"][0]["signed_prekey_age_days"] == 0


def test_signed_prekey_rotation_with_a_bad_signature_is_400():
    client, _ = session_client(UserFactory())
    device, body = register_device(client)
    new = device.signed_key()
    new["signature"] = _tampered(new["signature"])
    resp = client.put(f"/e2ee/devices/{body['device_id']}/signed-prekey", new, format="json")
    assert_api_error(resp, code="INVALID_SIGNATURE", status=400)


def test_resending_a_stale_signed_prekey_is_409_bundle_stale():
    client, _ = session_client(UserFactory())
    device = OlmDevice()
    payload = device.registration(n_prekeys=1)
    device_id = client.post("/e2ee/devices", payload, format="json").json()["device_id"]
    url = f"/e2ee/devices/{device_id}/signed-prekey"

    # While fresh, re-sending the same key is a no-op that does NOT renew its age.
    _age_signed_prekey(device_id, 80)
    assert client.put(url, payload["signed_prekey"], format="json").status_code == 200
    assert client.get("/e2ee/devices").json()["devices"][0]["signed_prekey_age_days"] == 80

    _age_signed_prekey(device_id, 91)
    listed = client.get("/e2ee/devices").json()["devices"][0]
    assert listed["signed_prekey_stale"] is True and listed["signed_prekey_age_days"] == 91
    body = assert_api_error(
        client.put(url, payload["signed_prekey"], format="json"), code="BUNDLE_STALE", status=409
    )
    assert "90 days" in body["detail"]

    # Nor under a new key id.
    renamed = dict(payload["signed_prekey"], key_id="renamed")
    assert_api_error(client.put(url, renamed, format="json"), code="BUNDLE_STALE", status=409)

    # A new key is accepted and no longer stale.
    assert client.put(url, device.signed_key(), format="json").status_code == 200
    assert client.get("/e2ee/devices").json()["devices"][0]["signed_prekey_stale"] is False


def test_signed_prekey_key_id_reused_for_another_key_is_409():
    client, _ = session_client(UserFactory())
    device = OlmDevice()
    payload = device.registration(n_prekeys=1)
    device_id = client.post("/e2ee/devices", payload, format="json").json()["device_id"]
    other = device.signed_key()
    other["key_id"] = payload["signed_prekey"]["key_id"]
    resp = client.put(f"/e2ee/devices/{device_id}/signed-prekey", other, format="json")
    assert_api_error(resp, code="CONFLICT", status=409)


# --- Revocation -------------------------------------------------------------------------------


def _queue_deliveries(device_id, sender) -> tuple[Delivery, Delivery]:
    device = Device.objects.get(pk=device_id)
    low, high = sorted((device.user_id, sender.pk))
    conversation = Conversation.objects.create(user_low_id=low, user_high_id=high)
    first = Message.objects.create(conversation=conversation, sender_user=sender, client_message_id="m1")
    second = Message.objects.create(conversation=conversation, sender_user=sender, client_message_id="m2")
    delivered = Delivery.objects.create(
        message=first,
        device=device,
        recipient_user_id=device.user_id,
        seq=1,
        ciphertext="Y2lwaGVy",
        delivered_at=timezone.now(),
    )
    queued = Delivery.objects.create(
        message=second, device=device, recipient_user_id=device.user_id, seq=2, ciphertext="Y2lwaGVy"
    )
    return delivered, queued


def test_revoke_ends_sessions_deletes_keys_and_queued_messages():
    user = UserFactory()
    phone_client, phone_session = session_client(user)
    laptop_client, _ = session_client(user)
    phone, phone_body = register_device(phone_client, n_prekeys=5)
    register_device(laptop_client)
    device_id = phone_body["device_id"]
    delivered, queued = _queue_deliveries(device_id, UserFactory())

    resp = laptop_client.delete(f"/e2ee/devices/{device_id}")

    assert resp.status_code == 204
    device = Device.objects.get(pk=device_id)
    assert device.status == "revoked" and device.revoked_at is not None
    assert not OneTimePrekey.objects.filter(device_id=device_id).exists()
    assert not KeyBundle.objects.filter(pk=device_id).exists()
    assert not Delivery.objects.filter(pk=queued.pk).exists()
    assert Delivery.objects.filter(pk=delivered.pk).exists()  # acknowledged history is kept
    phone_session.refresh_from_db()
    assert phone_session.revoked_at is not None
    event = SecurityEvent.objects.get(kind=SecurityEvent.Kind.DEVICE_REVOKED, user=user)
    assert event.data["device_id"] == device_id and event.data["queued_deleted"] == 1

    # The revoked device's own token no longer works at all.
    assert_api_error(phone_client.get("/e2ee/devices"), code="UNAUTHENTICATED", status=401)
    # Calls made as that device are 409 DEVICE_REVOKED.
    with pytest.raises(ApiError) as info:
        selectors.device_for_session(phone_session.device_id)
    assert info.value.code == "DEVICE_REVOKED"
    url = f"/e2ee/devices/{device_id}"
    assert_api_error(
        laptop_client.post(f"{url}/prekeys", {"one_time_prekeys": phone.one_time_keys(1)}, format="json"),
        code="DEVICE_REVOKED",
        status=409,
    )
    assert_api_error(
        laptop_client.put(f"{url}/signed-prekey", phone.signed_key(), format="json"),
        code="DEVICE_REVOKED",
        status=409,
    )
    assert_api_error(laptop_client.delete(url), code="DEVICE_REVOKED", status=409)
    # Listed as revoked; never in a bundle.
    listed = {d["device_id"]: d for d in laptop_client.get("/e2ee/devices").json()["devices"]}
    assert listed[device_id]["status"] == "revoked" and listed[device_id]["prekeys_remaining"] == 0
    other, _ = session_client(UserFactory())
    bundle = other.get(f"/e2ee/bundles/{user.pk}").json()
    assert device_id not in [d["device_id"] for d in bundle["devices"]]
    assert selectors.active_devices(user.pk) == [Device.objects.exclude(pk=device_id).get(user=user).pk]


def test_a_user_may_revoke_the_device_of_the_calling_session():
    client, session = session_client(UserFactory())
    _, body = register_device(client)
    assert client.delete(f"/e2ee/devices/{body['device_id']}").status_code == 204
    assert_api_error(client.get("/e2ee/devices"), code="UNAUTHENTICATED", status=401)


def test_device_for_session_requires_a_device():
    _, session = session_client(UserFactory())
    with pytest.raises(ApiError) as info:
        selectors.device_for_session(session.device_id)
    assert info.value.code == "DEVICE_REQUIRED" and info.value.status == 409
    client, session = session_client(UserFactory())
    _, body = register_device(client)
    session.refresh_from_db()
    assert str(selectors.device_for_session(session.device_id).pk) == body["device_id"]


def test_revoke_service_rejects_another_users_device():
    client, _ = session_client(UserFactory())
    _, body = register_device(client)
    with pytest.raises(ApiError) as info:
        services.device_revoke(device=Device.objects.get(pk=body["device_id"]), by_user=UserFactory())
    assert info.value.code == "NOT_FOUND"


# --- Selectors ------------------------------------------------------------------------------


def test_otpk_pool_summary_counts_active_devices():
    counts = [3, 7, 12]
    for n in counts:
        register_device(session_client(UserFactory())[0], n_prekeys=n)
    client, _ = session_client(UserFactory())
    _, revoked = register_device(client, n_prekeys=0)
    client.delete(f"/e2ee/devices/{revoked['device_id']}")
    assert selectors.otpk_pool_summary() == {
        "devices_under_5": 1,
        "devices_under_10": 2,
        "average_prekeys": 7.33,
    }


# --- Seed 001 runbook SQL, run unchanged ------------------------------------------------------

LOW_POOLS_SQL = """
SELECT d.device_id, d.user_id, d.device_name, kb.prekeys_remaining
FROM e2ee_devices d
JOIN e2ee_key_bundles kb ON d.device_id = kb.device_id
WHERE kb.prekeys_remaining < 5
AND d.status = 'active';
"""

LOW_POOLS_WITH_USERS_SQL = """
SELECT d.device_id, u.username, kb.prekeys_remaining
FROM e2ee_devices d
JOIN users u ON d.user_id = u.account_id
JOIN e2ee_key_bundles kb ON d.device_id = kb.device_id
WHERE kb.prekeys_remaining < 5
AND d.status = 'active';
"""


def _rows(sql: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def test_runbook_low_otpk_pool_queries_find_the_stuck_devices():
    stuck_user, healthy_user = UserFactory(username="stuck"), UserFactory(username="healthy")
    stuck_client, _ = session_client(stuck_user)
    _, stuck = register_device(stuck_client, n_prekeys=3, name="old phone")
    register_device(session_client(healthy_user)[0], n_prekeys=20)
    # A claimed-down pool is found too (the counter is kept by the claims).
    _, draining = register_device(session_client(healthy_user)[0], n_prekeys=6, name="tablet")
    fetcher, _ = session_client(UserFactory())
    fetcher.get(f"/e2ee/bundles/{healthy_user.pk}")
    fetcher.get(f"/e2ee/bundles/{healthy_user.pk}")
    # A revoked device is not reported even though it has nothing left.
    _, gone = register_device(session_client(stuck_user)[0], n_prekeys=0)
    stuck_client.delete(f"/e2ee/devices/{gone['device_id']}")

    rows = sorted(_rows(LOW_POOLS_SQL), key=lambda r: r[3])
    assert [(str(uuid.UUID(str(r[0]))), r[1], r[2], r[3]) for r in rows] == [
        (stuck["device_id"], stuck_user.pk, "old phone", 3),
        (draining["device_id"], healthy_user.pk, "tablet", 4),
    ]
    rows = sorted(_rows(LOW_POOLS_WITH_USERS_SQL), key=lambda r: r[2])
    assert [(str(uuid.UUID(str(r[0]))), r[1], r[2]) for r in rows] == [
        (stuck["device_id"], "stuck", 3),
        (draining["device_id"], "healthy", 4),
    ]


# --- Admin --------------------------------------------------------------------------------------

DEVICES_URL = "/admin/dm/device/"


def _staff_client() -> Client:
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_admin_device_changelist_shows_pools():
    client, _ = session_client(UserFactory(username="alice"))
    _, body = register_device(client, n_prekeys=7)
    resp = _staff_client().get(DEVICES_URL)
    assert resp.status_code == 200
    html = resp.content.decode()
    assert body["device_id"] in html and "alice" in html
    assert _staff_client().get(f"/admin/dm/keybundle/{body['device_id']}/change/").status_code == 200


def test_admin_revoke_action_shows_the_plan_asks_a_reason_then_revokes():
    user = UserFactory()
    client, session = session_client(user)
    _, body = register_device(client, n_prekeys=7)
    staff = _staff_client()
    selected = {"action": "revoke_devices", "_selected_action": [body["device_id"]]}

    resp = staff.post(DEVICES_URL, selected)
    html = resp.content.decode()
    assert resp.status_code == 200
    assert 'name="confirm" value="yes"' in html
    assert "end 1 session(s)" in html and "7 one-time prekey(s)" in html
    assert Device.objects.get(pk=body["device_id"]).status == "active"

    no_reason = staff.post(DEVICES_URL, {**selected, "confirm": "yes"})
    assert "Give a reason." in no_reason.content.decode()
    assert Device.objects.get(pk=body["device_id"]).status == "active"

    resp = staff.post(DEVICES_URL, {**selected, "confirm": "yes", "reason": "lost phone"})
    assert resp.status_code == 302
    assert [str(m) for m in get_messages(resp.wsgi_request)] == ["Revoked 1 device(s)."]
    assert Device.objects.get(pk=body["device_id"]).status == "revoked"
    event = SecurityEvent.objects.get(kind=SecurityEvent.Kind.DEVICE_REVOKED)
    assert event.data["reason"] == "lost phone"
    assert Session.objects.get(pk=session.pk).revoked_at is not None
