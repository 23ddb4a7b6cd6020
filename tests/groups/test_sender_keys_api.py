"""Sender-key distribution over REST: the device set rule, idempotency, the ledger."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from dm.models import Device
from dm.services.devices import device_revoke
from groups.models import GroupMessage, SenderKey, SenderKeyEnvelope
from tests.conftest import assert_api_error
from tests.dm.helpers import add_device, party
from tests.groups.helpers import distribute, epoch, make_group

pytestmark = pytest.mark.django_db(transaction=True)


def test_distribution_stores_one_proto_11_message_and_one_envelope_per_other_device():
    alice, bob = party(), party()
    alice_laptop = add_device(alice.user, name="laptop")
    bob_laptop = add_device(bob.user, name="laptop")
    group = make_group(alice, bob)
    resp = distribute(alice, group, "k1", client_message_id="d-1")
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["proto"] == 11 and body["recipients"] == 3 and body["seq"] == 1
    message = GroupMessage.objects.get(pk=body["message_id"])
    assert message.proto == 11 and message.ciphertext == ""
    key = SenderKey.objects.get(message=message)
    assert key.group_epoch == epoch(group) and key.sender_key_id == "k1"
    assert {str(e.device_id) for e in key.envelopes.all()} == {
        alice_laptop.device_id,
        bob.device_id,
        bob_laptop.device_id,
    }
    # Idempotent: by client message id, and by (device, epoch, key id).
    again = distribute(alice, group, "k1", client_message_id="d-1")
    assert again.status_code == 200 and again.json()["message_id"] == body["message_id"]
    repeat = distribute(alice, group, "k1")
    assert repeat.status_code == 200 and repeat.json()["duplicate"] is True
    assert SenderKey.objects.count() == 1


def test_device_mismatch_lists_missing_extra_and_revoked():
    alice, bob = party(), party()
    bob_laptop = add_device(bob.user, name="laptop")
    outsider = party()
    group = make_group(alice, bob)
    envelopes = [
        {"device_id": bob.device_id, "ciphertext": "b2xt"},
        {"device_id": outsider.device_id, "ciphertext": "b2xt"},
    ]
    body = assert_api_error(distribute(alice, group, envelopes=envelopes), code="DEVICE_MISMATCH", status=409)
    assert body["missing_devices"] == [bob_laptop.device_id]
    assert body["extra_devices"] == [outsider.device_id]
    assert body["revoked_devices"] == []

    device_revoke(device=Device.objects.get(pk=bob_laptop.device_id), by_user=bob.user)
    envelopes = [
        {"device_id": bob.device_id, "ciphertext": "b2xt"},
        {"device_id": bob_laptop.device_id, "ciphertext": "b2xt"},
    ]
    body = assert_api_error(distribute(alice, group, envelopes=envelopes), code="DEVICE_MISMATCH", status=409)
    assert body["revoked_devices"] == [bob_laptop.device_id] and body["missing_devices"] == []
    assert GroupMessage.objects.count() == 0


def test_stale_epoch_and_non_member():
    alice, bob, mallory = party(), party(), party()
    group = make_group(alice, bob)
    assert_api_error(distribute(alice, group, group_epoch=1), code="EPOCH_STALE", status=409)
    assert_api_error(distribute(mallory, group), code="NOT_MEMBER", status=403)


def test_the_ledger_shows_acks_per_device():
    alice, bob, carol = party(), party(), party()
    group = make_group(alice, bob, carol)
    distribute(alice, group, "k1")
    bob.client.post(f"/groups/{group.pk}/ack", {"seq": 1}, format="json")
    resp = alice.client.get(f"/groups/{group.pk}/sender-keys")
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert body["group_epoch"] == epoch(group)
    (key,) = body["sender_keys"]
    assert key["sender_key_id"] == "k1" and key["sender_device_id"] == alice.device_id
    ledger = {e["device_id"]: e["acked_at"] for e in key["envelopes"]}
    assert ledger[bob.device_id] is not None and ledger[carol.device_id] is None
    # Bob sees only his own keys (none).
    assert bob.client.get(f"/groups/{group.pk}/sender-keys").json()["sender_keys"] == []
    assert SenderKeyEnvelope.objects.filter(acked_at__isnull=True).count() == 1


def test_a_group_of_one_distributes_to_nobody():
    alice = party()
    group = make_group(alice)
    resp = distribute(alice, group, envelopes=[])
    assert resp.status_code == 201 and resp.json()["recipients"] == 0
    assert get_user_model().objects.count() == 1
