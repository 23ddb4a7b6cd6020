"""dm-purge-deliveries walks each kind of row once a run (keyset pagination by primary key), so a
run's batches never re-read the rows that did not match (issue 17, review item 10)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from dm.models import Delivery, Message
from dm.services.messages import deliveries_purge
from tests.dm.helpers import open_conversation, party, send

pytestmark = pytest.mark.django_db  # one transaction: pg_stat_xact_* counts this test's reads


def _delivery_tuples_read() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)"
            " FROM pg_stat_xact_user_tables WHERE relname = 'dm_delivery'"
        )
        return int(cursor.fetchone()[0])


@override_settings(DM_ACKED_RETENTION_HOURS=1, DM_PURGE_BATCH_SIZE=1, DM_PURGE_MAX_BATCHES=100)
def test_a_purge_run_reads_the_rows_that_do_not_match_once_not_once_per_batch():
    alice, bob = party(), party()
    conv = open_conversation(alice, bob)
    for _ in range(40):  # recent, unacknowledged: never purged, and first in primary-key order
        send(alice, conv, [bob.device_id])
    old_ids = [send(alice, conv, [bob.device_id]).json()["message_id"] for _ in range(10)]
    old = timezone.now() - timedelta(hours=3)
    Delivery.objects.filter(message_id__in=old_ids).update(created_at=old, delivered_at=old)
    Message.objects.filter(pk__in=old_ids).update(created_at=old)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # the plan a large table gets
    before = _delivery_tuples_read()

    assert deliveries_purge() == {"acked_purged": 10, "unacked_expired": 0, "messages_deleted": 10}

    read = _delivery_tuples_read() - before
    # One pass reads the 40 recent rows about once per kind of purge; re-walking from the start
    # each batch would read them once per batch (10 batches: 400 or more).
    assert read < 200
