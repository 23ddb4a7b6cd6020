"""The groups admin's delivery and sender-key changelists cost the same queries for N rows as for
2N (the devices they show are joined, not fetched per row), and never load a device's keys or an
envelope's ciphertext."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from groups.models import Delivery as GroupDelivery
from tests.factories import DeviceFactory, GroupFactory

pytestmark = pytest.mark.django_db

CHANGELISTS = (
    "/admin/groups/delivery/",
    "/admin/groups/senderkey/",
    "/admin/groups/senderkeyenvelope/",
)


def _sql(statement: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def add_rows(n: int) -> None:
    """n groups, each with a delivery position, a sender key and an envelope, all on new devices."""
    for _ in range(n):
        group, sender, recipient = GroupFactory(), DeviceFactory(), DeviceFactory()
        [(message,)] = _sql(
            "INSERT INTO group_messages (seq, group_epoch, proto, sender_key_id, client_message_id, "
            "ciphertext, created_at, group_id, sender_device_id, sender_user_id) "
            "VALUES (1, 1, 11, 'k1', md5(random()::text), 'opaque', now(), %s, %s, %s) RETURNING id",
            [group.pk, sender.pk, sender.user_id],
        )
        GroupDelivery.objects.create(group=group, device=recipient, message_id=message, acked_seq=1)
        [(key,)] = _sql(
            "INSERT INTO group_sender_keys (group_epoch, sender_key_id, rotated_at, group_id, message_id, "
            "sender_device_id, sender_user_id) VALUES (1, 'k1', now(), %s, %s, %s, %s) RETURNING id",
            [group.pk, message, sender.pk, sender.user_id],
        )
        _sql(
            "INSERT INTO group_sender_key_envelopes (recipient_user_id, message_type, ciphertext, "
            "created_at, device_id, sender_key_id) VALUES (%s, 0, 'opaque', now(), %s, %s)",
            [recipient.user_id, recipient.pk, key],
        )


def queries(client, url: str) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return [q["sql"] for q in captured.captured_queries]


@pytest.mark.parametrize("url", CHANGELISTS)
def test_the_changelist_costs_the_same_queries_for_twice_the_rows(admin_client, url):
    add_rows(3)
    few = len(queries(admin_client, url))
    add_rows(3)

    assert len(queries(admin_client, url)) == few


@pytest.mark.parametrize("url", CHANGELISTS)
def test_the_changelist_loads_no_device_keys_or_ciphertext(admin_client, url):
    add_rows(2)

    sql = " ".join(queries(admin_client, url))

    assert "e2ee_devices" in sql  # the device is joined for its name
    assert "identity_key" not in sql
    assert "signing_key" not in sql
    assert "ciphertext" not in sql
