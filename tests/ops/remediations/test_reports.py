"""The read-only reports (ops/reports.py and their commands): the runbooks' metadata, never a
ciphertext or a key."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from chatsite.realtime import live_connections
from dm.models import Delivery, Message, OneTimePrekey
from ops import reports
from tests.conftest import login
from tests.dm.helpers import party
from tests.factories import DeviceFactory, MessageFactory, UserFactory
from tests.groups.helpers import distribute, make_group, send
from tests.ops.remediations.helpers import run
from tests.realtime.clients import Communicator, application

SECRET = "U0VDUkVUQ0lQSEVSVEVYVA"  # base64 of an "opaque ciphertext" that must never be printed


def traffic():
    """Three direct messages from one device to two people, two group messages from another user."""
    loud = DeviceFactory()
    for _ in range(2):
        MessageFactory(sender_device=loud, ciphertext=SECRET)
    MessageFactory(sender_device=loud, ciphertext=SECRET)
    alice, bob = party(), party()
    group = make_group(alice, bob)
    assert distribute(alice, group).status_code == 201
    for _ in range(2):
        assert send(alice, group, ciphertext=SECRET).status_code == 201
    return loud.user, alice.user


@pytest.mark.django_db
def test_top_senders_counts_messages_recipients_and_groups_without_content():
    loud, alice = traffic()
    Message.objects.filter(sender_user=loud).update(created_at=timezone.now() - timedelta(minutes=30))

    rows = reports.top_senders(hours=1)
    out = run("top_senders", "--hours", "1") + run("top_senders", "--json")

    by_user = {r["user_id"]: r for r in rows}
    assert rows[0]["user_id"] == loud.pk
    assert (by_user[loud.pk]["dm_messages"], by_user[loud.pk]["dm_recipients"]) == (3, 3)
    assert (by_user[alice.pk]["group_messages"], by_user[alice.pk]["groups"]) == (2, 1)
    assert loud.username in out and alice.username in out
    assert SECRET not in out


@pytest.mark.django_db
def test_top_senders_leaves_out_what_is_older_than_the_window():
    loud, _ = traffic()
    Message.objects.filter(sender_user=loud).update(created_at=timezone.now() - timedelta(hours=2))

    assert loud.pk not in {r["user_id"] for r in reports.top_senders(hours=1)}


@pytest.mark.django_db
def test_delivery_report_counts_stored_and_delivered_without_content():
    traffic()

    report = reports.delivery(since=timezone.now() - timedelta(minutes=10))
    out = run("delivery_report", "--minutes", "10") + run("delivery_report", "--json")

    assert report["dm"]["messages"] == 3
    assert report["dm"]["envelopes"] == 3 and report["dm"]["pending"] == 3
    assert report["dm"]["acknowledged"] == 0
    assert report["groups"]["messages"] == 2 and report["groups"]["sender_key_distributions"] == 1
    assert "direct messages stored: 3" in out
    assert SECRET not in out


@pytest.mark.django_db
def test_delivery_report_counts_as_overdue_what_is_pending_past_the_integrity_threshold(settings):
    settings.INTEGRITY_UNDELIVERED_AFTER_S = 60
    traffic()
    Delivery.objects.update(created_at=timezone.now() - timedelta(minutes=2))  # 2 min < 5 min

    report = reports.delivery(since=timezone.now() - timedelta(minutes=10))
    out = run("delivery_report", "--minutes", "10")

    assert (report["dm"]["pending_overdue"], report["dm"]["overdue_after_s"]) == (3, 60)
    assert "3 pending (3 for over 60 s)" in out


@pytest.mark.django_db
def test_low_prekeys_lists_at_most_the_configured_number_of_devices(settings):
    settings.OPS_LOW_PREKEYS_REPORT_LIMIT = 1
    emptiest, _other = DeviceFactory(one_time_prekeys=1), DeviceFactory(one_time_prekeys=2)

    assert [r["device_id"] for r in reports.low_prekeys()] == [str(emptiest.pk)]


@pytest.mark.django_db
def test_low_prekeys_lists_devices_under_the_threshold_without_keys():
    low, full = DeviceFactory(one_time_prekeys=2), DeviceFactory(one_time_prekeys=5)

    out = run("low_prekeys") + run("low_prekeys", "--json")

    assert str(low.pk) in out and "prekeys=2" in out
    assert str(full.pk) not in out
    keys = [low.identity_key, low.signing_key, low.bundle.signed_prekey, low.bundle.signed_prekey_signature]
    keys += list(OneTimePrekey.objects.filter(device=low).values_list("public_key", flat=True))
    assert not [k for k in keys if k in out]


@pytest.mark.django_db(transaction=True)
async def test_connections_report_groups_live_sockets_by_ip_and_user_agent(redis_required):
    user = await database_sync_to_async(UserFactory)()
    token = await database_sync_to_async(login)(user)
    sockets = []
    for agent in (b"MobileApp/1.0.0", b"MobileApp/1.0.0", b"MobileApp/1.2.3"):
        comm = Communicator(
            application,
            "/ws",
            headers=[(b"authorization", f"Bearer {token}".encode()), (b"user-agent", agent)],
        )
        comm.scope["client"] = ("203.0.113.9", 40000)
        assert (await comm.connect(timeout=5))[0]
        await comm.receive_json_from(timeout=5)  # hello
        sockets.append(comm)
    for _ in range(50):  # the records are written by a task of each stream
        if len(await database_sync_to_async(live_connections.snapshot)()) == 3:
            break
        await asyncio.sleep(0.05)

    report = await database_sync_to_async(reports.connections)()
    out = await database_sync_to_async(run)("connections_report")

    assert report["total"] == 3
    assert report["by_ip"] == [("203.0.113.9", 3)]
    assert report["by_user_agent"] == [("MobileApp/1.0.0", 2), ("MobileApp/1.2.3", 1)]
    assert report["by_user"] == [(f"{user.username} ({user.pk})", 3)]
    assert "MobileApp/1.0.0" in out and "203.0.113.9" in out
    assert json.loads(await database_sync_to_async(run)("connections_report", "--json"))["total"] == 3
    for comm in sockets:
        await comm.disconnect()
    assert await database_sync_to_async(live_connections.snapshot)() == []
