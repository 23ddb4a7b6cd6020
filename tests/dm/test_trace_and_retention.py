"""Delivery tracing (admin and manage.py) and the retention purge."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from dm.models import Delivery, Device, Message
from dm.services import devices as device_services
from dm.tasks import purge_deliveries
from tests.dm.helpers import open_conversation, party, send

pytestmark = pytest.mark.django_db


def test_dm_trace_shows_each_device_state_without_ciphertext():
    alice, bob = party(), party()
    conv = open_conversation(alice, bob)
    sent = send(alice, conv, [bob.device_id], text="U0VDUkVUQ0lQSEVS").json()
    bob.client.post("/dm/ack", {"up_to": 1}, format="json")
    out = StringIO()
    call_command("dm_trace", str(sent["message_id"]), stdout=out)
    text = out.getvalue()
    assert bob.device_id in text and "acknowledged" in text
    assert "U0VDUkVUQ0lQSEVS" not in text
    out = StringIO()
    call_command("dm_trace", str(sent["message_id"]), "--json", stdout=out)
    assert '"state": "acknowledged"' in out.getvalue()


def test_an_ack_keeps_the_hand_over_time_the_fetch_recorded():
    alice, bob = party(), party()
    conv = open_conversation(alice, bob)
    sent = send(alice, conv, [bob.device_id]).json()
    assert len(bob.client.get("/dm/messages?since=0").json()["messages"]) == 1  # handed over now
    handed_over = Delivery.objects.get(message_id=sent["message_id"]).sent_at

    bob.client.post("/dm/ack", {"up_to": 1}, format="json")

    delivery = Delivery.objects.get(message_id=sent["message_id"])
    assert handed_over is not None
    assert delivery.sent_at == handed_over  # not overwritten by the ack's time
    assert delivery.delivered_at > handed_over


def test_an_ack_of_a_message_never_handed_over_records_both_at_once():
    alice, bob = party(), party()
    conv = open_conversation(alice, bob)
    sent = send(alice, conv, [bob.device_id]).json()

    bob.client.post("/dm/ack", {"message_ids": [sent["message_id"]]}, format="json")

    delivery = Delivery.objects.get(message_id=sent["message_id"])
    assert delivery.sent_at is not None and delivery.sent_at == delivery.delivered_at


def test_dm_trace_of_a_message_whose_device_was_revoked_says_why_it_has_no_row():
    alice, bob = party(), party()
    conv = open_conversation(alice, bob)
    sent = send(alice, conv, [bob.device_id]).json()
    device_services.device_revoke(device=Device.objects.get(pk=bob.device_id), by_user=bob.user)

    out = StringIO()
    call_command("dm_trace", str(sent["message_id"]), stdout=out)

    assert f"{bob.device_id} user={bob.user.pk} revoked at" in out.getvalue()
    assert "queued deliveries were deleted with it" in out.getvalue()


def test_admin_message_page_traces_deliveries_without_ciphertext(admin_client):
    alice, bob = party(), party()
    conv = open_conversation(alice, bob)
    sent = send(alice, conv, [bob.device_id], text="U0VDUkVUQ0lQSEVS").json()
    resp = admin_client.get(f"/admin/dm/message/{sent['message_id']}/change/", secure=True)
    assert resp.status_code == 200
    html = resp.content.decode()
    assert bob.device_id in html
    assert "U0VDUkVUQ0lQSEVS" not in html


@override_settings(DM_ACKED_RETENTION_HOURS=1, DM_UNACKED_RETENTION_DAYS=2)
def test_purge_removes_old_acknowledged_and_expired_unacknowledged_deliveries():
    alice, bob = party(), party()
    conv = open_conversation(alice, bob)
    old_acked, old_unacked, fresh = (
        send(alice, conv, [bob.device_id]).json()["message_id"] for _ in range(3)
    )
    now = timezone.now()
    Delivery.objects.filter(message_id=old_acked).update(
        created_at=now - timedelta(hours=3), delivered_at=now - timedelta(hours=2)
    )
    Message.objects.filter(pk=old_acked).update(created_at=now - timedelta(hours=3))
    Delivery.objects.filter(message_id=old_unacked).update(created_at=now - timedelta(days=3))
    Message.objects.filter(pk=old_unacked).update(created_at=now - timedelta(days=3))
    result = purge_deliveries.apply().get()
    assert result == {"acked_purged": 1, "unacked_expired": 1, "messages_deleted": 2}
    assert list(Message.objects.values_list("pk", flat=True)) == [fresh]
    assert Delivery.objects.filter(message_id=fresh).exists()


def test_messages_cannot_be_deleted_in_the_admin_and_deliveries_are_spelt_right(admin_client):
    alice, bob = party(), party()
    conv = open_conversation(alice, bob)
    sent = send(alice, conv, [bob.device_id]).json()

    changelist = admin_client.get("/admin/dm/message/")
    delete = admin_client.post(f"/admin/dm/message/{sent['message_id']}/delete/", {"post": "yes"})
    change = admin_client.get(f"/admin/dm/message/{sent['message_id']}/change/")

    assert "delete_selected" not in changelist.content.decode()
    assert delete.status_code == 403
    assert Message.objects.filter(pk=sent["message_id"]).exists()
    assert "Deliverys" not in change.content.decode() and "Deliveries" in change.content.decode()
