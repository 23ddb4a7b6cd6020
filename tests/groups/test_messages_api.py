"""Group messages over REST: send (sender key required, epoch checked, idempotent, rate
limited), the fan-out-on-read page (joined_seq, envelopes only for their device), acks."""

from __future__ import annotations

import uuid

import pytest
from django.db import transaction
from django.test import override_settings

from groups.models import Delivery, Group, GroupMessage, SenderKeyEnvelope
from groups.services.members import _admit
from tests.conftest import assert_api_error
from tests.dm.helpers import add_device, party
from tests.groups.helpers import distribute, epoch, make_group, page, send

pytestmark = pytest.mark.django_db(transaction=True)


def test_send_requires_a_sender_key_of_the_current_epoch():
    alice, bob = party(), party()
    group = make_group(alice, bob)
    body = assert_api_error(send(alice, group), code="SENDER_KEY_REQUIRED", status=409)
    assert body["group_epoch"] == epoch(group)
    assert distribute(alice, group).status_code == 201
    resp = send(alice, group)
    assert resp.status_code == 201, resp.content
    sent = resp.json()
    assert sent["seq"] == 2 and sent["group_epoch"] == epoch(group) and sent["duplicate"] is False
    assert sent["recipients"] == 1  # bob's device; not the sender's own
    assert set(sent) >= {"message_id", "seq", "group_epoch", "created_at"}
    # A refused send takes no seq: the group's position is the two stored messages.
    assert Group.objects.get(pk=group.pk).last_seq == 2


def test_one_row_per_message_whatever_the_number_of_devices():
    alice, bob, carol = party(), party(), party()
    add_device(bob.user, name="laptop")
    group = make_group(alice, bob, carol)
    distribute(alice, group)
    before = GroupMessage.objects.count()
    assert send(alice, group).status_code == 201
    assert GroupMessage.objects.count() == before + 1
    assert Delivery.objects.count() == 0  # positions are written on ack, not on send


def test_send_is_idempotent_on_the_client_message_id():
    alice, bob = party(), party()
    group = make_group(alice, bob)
    distribute(alice, group)
    first = send(alice, group, cmid="m-1")
    again = send(alice, group, cmid="m-1")
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["message_id"] == first.json()["message_id"]
    assert again.json()["duplicate"] is True
    assert GroupMessage.objects.filter(client_message_id="m-1").count() == 1


def test_stale_epoch_is_refused_with_what_changed():
    alice, bob, carol = party(), party(), party()
    group = make_group(alice, bob)
    old = epoch(group)
    distribute(alice, group)
    with transaction.atomic():
        _admit(group_id=group.pk, user_id=carol.user.pk)
    body = assert_api_error(send(alice, group, group_epoch=old), code="EPOCH_STALE", status=409)
    assert body["group_epoch"] == old + 1
    assert [c["user_id"] for c in body["changes"]["members_added"]] == [carol.user.pk]
    assert body["changes"]["members_removed"] == []
    # The old key is of the old epoch: a new one is needed now.
    assert_api_error(send(alice, group), code="SENDER_KEY_REQUIRED", status=409)


def test_non_members_and_unknown_groups():
    alice, bob, mallory = party(), party(), party()
    group = make_group(alice, bob)
    assert_api_error(send(mallory, group), code="NOT_MEMBER", status=403)
    assert_api_error(mallory.client.get(f"/groups/{group.pk}/messages"), code="NOT_MEMBER", status=403)
    resp = alice.client.get(f"/groups/{uuid.uuid4()}/messages")
    assert_api_error(resp, code="NOT_FOUND", status=404)


def test_rate_limit_is_per_user_per_minute():
    alice, bob = party(), party()
    group = make_group(alice, bob)
    distribute(alice, group)
    with override_settings(GROUP_MESSAGE_RATE_PER_USER_PER_MIN=2):
        assert send(alice, group, cmid="a").status_code == 201
        assert send(alice, group, cmid="b").status_code == 201
        resp = send(alice, group, cmid="c")
        assert_api_error(resp, code="RATE_LIMITED", status=429)
        assert int(resp["X-Retry-After"]) >= 1
        # A retry of a stored message is still answered.
        assert send(alice, group, cmid="a").status_code == 200


def test_validation_and_size():
    alice, bob = party(), party()
    group = make_group(alice, bob)
    distribute(alice, group)
    assert_api_error(send(alice, group, ciphertext="not base64!"), code="VALIDATION_ERROR", status=400)
    with override_settings(GROUP_MAX_MESSAGE_BYTES=8):
        assert_api_error(
            send(alice, group, ciphertext="QUFBQUFBQUFBQUFB"), code="PAYLOAD_TOO_LARGE", status=413
        )


def test_page_is_fan_out_on_read_with_joined_seq_and_own_envelopes_only():
    alice, bob, carol = party(), party(), party()
    group = make_group(alice, bob)
    distribute(alice, group, "k1")  # seq 1: envelope for bob only
    send(alice, group, key_id="k1", ciphertext="b25l")  # seq 2
    with transaction.atomic():
        _admit(group_id=group.pk, user_id=carol.user.pk)  # joined_seq = 2
    distribute(alice, group, "k2")  # seq 3: envelopes for bob and carol
    send(alice, group, key_id="k2", ciphertext="dHdv")  # seq 4

    bob_page = page(bob, group)
    assert [m["seq"] for m in bob_page["messages"]] == [1, 2, 3, 4]
    assert bob_page["cursor"] == 4 and bob_page["has_more"] is False
    distribution = bob_page["messages"][0]
    assert distribution["proto"] == 11 and distribution["ciphertext"] == ""
    assert distribution["envelope"] == {"message_type": 0, "ciphertext": "b2xt"}
    assert bob_page["messages"][1]["proto"] == 1 and bob_page["messages"][1]["envelope"] is None

    carol_page = page(carol, group)
    assert [m["seq"] for m in carol_page["messages"]] == [3, 4]  # nothing before she joined

    # The sending device never reads its own sends (as in a DM queue); the sender's other
    # devices read its messages, but not distributions made before they existed (no envelope).
    assert page(alice, group)["messages"] == []
    alice_laptop = add_device(alice.user, "laptop")
    assert [m["seq"] for m in page(alice_laptop, group)["messages"]] == [2, 4]

    first = page(bob, group, since=0, limit=2)
    assert [m["seq"] for m in first["messages"]] == [1, 2] and first["has_more"] is True
    rest = page(bob, group, since=first["cursor"], limit=2)
    assert [m["seq"] for m in rest["messages"]] == [3, 4] and rest["has_more"] is False
    assert page(bob, group, since=4) == {"messages": [], "cursor": 4, "has_more": False}


def test_ack_moves_the_position_forward_only_and_fills_the_envelope_ledger():
    alice, bob = party(), party()
    group = make_group(alice, bob)
    distribute(alice, group)  # seq 1
    send(alice, group)  # seq 2
    send(alice, group)  # seq 3
    resp = bob.client.post(f"/groups/{group.pk}/ack", {"seq": 2}, format="json")
    assert resp.status_code == 200, resp.content
    assert resp.json() == {"group_id": str(group.pk), "acked_seq": 2, "envelopes_acked": 1}
    delivery = Delivery.objects.get(group=group, device_id=bob.device_id)
    assert delivery.acked_seq == 2 and delivery.message.seq == 2
    assert SenderKeyEnvelope.objects.get(device_id=bob.device_id).acked_at is not None
    # Backwards is a no-op; beyond the end is clamped to the last message.
    assert bob.client.post(f"/groups/{group.pk}/ack", {"seq": 1}, format="json").json()["acked_seq"] == 2
    assert bob.client.post(f"/groups/{group.pk}/ack", {"seq": 99}, format="json").json()["acked_seq"] == 3
    assert Delivery.objects.filter(group=group).count() == 1


def test_metrics_are_staff_only():
    alice, bob = party(), party()
    group = make_group(alice, bob)
    distribute(alice, group)
    send(alice, group)
    assert_api_error(alice.client.get("/groups/metrics"), code="PERMISSION_DENIED", status=403)
    alice.user.is_staff = True
    alice.user.save(update_fields=["is_staff"])
    resp = alice.client.get("/groups/metrics")
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert body["totals"]["messages"] == 1 and body["totals"]["sender_key_distributions"] == 1
    assert body["totals"]["groups"] == 1 and body["totals"]["participants"] == 2
    assert body["epoch_bumps_last_hour"] >= 1
    assert body["epoch_churn_last_hour"] == [{"group_id": str(group.pk), "bumps": epoch(group) - 1}]
    assert body["unacked_envelopes_older_than_5m"] == 0
    assert body["redis_status"] in ("available", "unavailable", "disabled")


@override_settings(GROUPS_ENABLED=False)
def test_feature_flag_off():
    alice, bob = party(), party()
    group = make_group(alice, bob)
    assert_api_error(send(alice, group, group_epoch=1), code="FEATURE_DISABLED", status=403)


def test_deleting_a_sender_keeps_its_messages_and_the_positions_that_point_at_them():
    alice, bob, carol = party(), party(), party()
    group = make_group(alice, bob, carol)
    distribute(bob, group)
    sent = send(bob, group).json()
    assert (
        carol.client.post(f"/groups/{group.pk}/ack", {"seq": sent["seq"]}, format="json").status_code == 200
    )

    bob.user.delete()

    message = GroupMessage.objects.get(pk=sent["message_id"])
    assert message.sender_user_id is None  # kept for the members who hold it
    assert Delivery.objects.get(group=group, device_id=carol.device_id).message_id == message.pk
    assert [m["seq"] for m in page(carol, group)["messages"]][-1] == sent["seq"]


def test_the_group_figures_are_prometheus_gauges(client):
    alice, bob = party(), party()
    group = make_group(alice, bob)
    distribute(alice, group)

    text = client.get("/metrics").content.decode()

    def sample(name: str) -> float:
        return float(next(line for line in text.splitlines() if line.startswith(f"{name} ")).split()[1])

    assert sample("groups_total") == 1
    assert sample("group_participants_total") == 2
    assert sample("group_epoch_bumps_last_hour_max") == epoch(group) - 1  # bumps since creation
    assert sample("group_sender_key_unacked_envelopes") == 0
    assert sample("groups_near_capacity") == 0
