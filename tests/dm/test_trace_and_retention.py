"""Delivery tracing (admin and manage.py) and the retention purge."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from dm.models import Delivery, Message
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
