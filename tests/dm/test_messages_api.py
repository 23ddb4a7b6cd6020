"""Conversations, sends, the device queue and acks over REST."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection
from django.test import override_settings
from prometheus_client import REGISTRY

from chatsite.accounts import services as account_services
from dm.models import Delivery, Message
from tests.conftest import assert_api_error, client_for
from tests.dm.helpers import add_device, open_conversation, party, send
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_opening_a_conversation_twice_returns_the_same_one():
    alice, bob = party(), party()
    first = alice.client.post("/dm/conversations", {"user_id": bob.user.pk}, format="json")
    again = bob.client.post("/dm/conversations", {"user_id": alice.user.pk}, format="json")
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    listed = alice.client.get("/dm/conversations").json()["conversations"]
    assert [(c["id"], c["user_id"]) for c in listed] == [(first.json()["id"], bob.user.pk)]


def test_reopening_a_known_conversation_is_not_charged(settings):
    settings.CONTACT_ADDS_PER_USER_PER_HOUR = 1
    me, a = UserFactory(), UserFactory()
    client = client_for(me)
    assert client.post("/dm/conversations", {"user_id": a.pk}, format="json").status_code == 201

    for _ in range(3):
        assert client.post("/dm/conversations", {"user_id": a.pk}, format="json").status_code == 200


def test_a_conversation_with_a_disabled_account_is_404_even_if_it_exists():
    me, gone = UserFactory(), UserFactory()
    client = client_for(me)
    assert client.post("/dm/conversations", {"user_id": gone.pk}, format="json").status_code == 201
    gone.disabled = True
    gone.save(update_fields=["disabled"])

    assert_api_error(
        client.post("/dm/conversations", {"user_id": gone.pk}, format="json"), code="NOT_FOUND", status=404
    )


def test_conversation_with_unknown_user_is_404_and_with_yourself_400():
    alice = party()
    assert_api_error(
        alice.client.post("/dm/conversations", {"user_id": 999999}, format="json"),
        code="NOT_FOUND",
        status=404,
    )
    assert_api_error(
        alice.client.post("/dm/conversations", {"user_id": alice.user.pk}, format="json"),
        code="BAD_REQUEST",
        status=400,
    )


def test_send_queues_one_delivery_per_recipient_device_with_increasing_cursors():
    alice, bob = party(), party()
    bob_tablet = add_device(bob.user, "tablet")
    conv = open_conversation(alice, bob)
    for _ in range(2):
        resp = send(alice, conv, [bob.device_id, bob_tablet.device_id])
        assert resp.status_code == 201, resp.content
        assert resp.json()["recipients"] == 2
    assert list(
        Delivery.objects.filter(device_id=bob.device_id).order_by("seq").values_list("seq", flat=True)
    ) == [1, 2]
    assert list(
        Delivery.objects.filter(device_id=bob_tablet.device_id).values_list("seq", flat=True).order_by("seq")
    ) == [1, 2]


def test_send_must_include_the_senders_other_devices():
    alice, bob = party(), party()
    alice_laptop = add_device(alice.user, "laptop")
    conv = open_conversation(alice, bob)
    body = assert_api_error(send(alice, conv, [bob.device_id]), code="DEVICE_MISMATCH", status=409)
    assert body["missing_devices"] == [alice_laptop.device_id]
    assert send(alice, conv, [bob.device_id, alice_laptop.device_id]).status_code == 201


def test_retry_with_the_same_client_message_id_returns_the_original():
    alice, bob = party(), party()
    conv = open_conversation(alice, bob)
    first = send(alice, conv, [bob.device_id], client_message_id="m-1")
    retry = send(alice, conv, [bob.device_id], client_message_id="m-1")
    assert first.status_code == 201 and retry.status_code == 200
    assert retry.json()["message_id"] == first.json()["message_id"]
    assert retry.json()["duplicate"] is True
    assert Message.objects.filter(client_message_id="m-1").count() == 1
    assert Delivery.objects.filter(device_id=bob.device_id).count() == 1


@pytest.mark.django_db(transaction=True)
def test_parallel_retries_store_exactly_one_message():
    alice, bob = party(), party()
    conv = open_conversation(alice, bob)
    results: list[int] = []
    barrier = threading.Barrier(8)

    def retry():
        try:
            barrier.wait()
            results.append(send(alice, conv, [bob.device_id], client_message_id="same").json()["message_id"])
        finally:
            connection.close()

    threads = [threading.Thread(target=retry) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert Message.objects.filter(client_message_id="same").count() == 1
    assert Delivery.objects.filter(device_id=bob.device_id).count() == 1


def test_device_mismatch_lists_missing_extra_and_revoked_devices():
    alice, bob = party(), party()
    bob_tablet = add_device(bob.user, "tablet")
    bob_old = add_device(bob.user, "old")
    assert bob.client.delete(f"/e2ee/devices/{bob_old.device_id}").status_code == 204
    conv = open_conversation(alice, bob)
    stranger = str(uuid.uuid4())
    body = assert_api_error(
        send(alice, conv, [bob.device_id, bob_old.device_id, stranger]), code="DEVICE_MISMATCH", status=409
    )
    assert body["missing_devices"] == [bob_tablet.device_id]
    assert body["extra_devices"] == [stranger]
    assert body["revoked_devices"] == [bob_old.device_id]
    assert Message.objects.count() == 0


def test_blocked_sender_gets_403_blocked():
    alice, bob = party(), party()
    conv = open_conversation(alice, bob)
    account_services.block_add(blocker=bob.user, user_id=alice.user.pk)
    assert_api_error(send(alice, conv, [bob.device_id]), code="BLOCKED", status=403)


@override_settings(DM_SEND_RATE_PER_MIN=2)
def test_sender_rate_limit_per_minute_is_429_with_retry_in_seconds():
    alice, bob = party(), party()
    conv = open_conversation(alice, bob)
    assert send(alice, conv, [bob.device_id]).status_code == 201
    assert send(alice, conv, [bob.device_id]).status_code == 201
    resp = send(alice, conv, [bob.device_id])
    body = assert_api_error(resp, code="RATE_LIMITED", status=429)
    assert body["retry_in_seconds"] >= 1
    assert int(resp["X-Retry-After"]) == body["retry_in_seconds"]


@override_settings(DM_SEND_RATE_PER_MIN=1000, DM_SEND_RATE_PER_HOUR=1)
def test_sender_rate_limit_per_hour_is_429():
    alice, bob = party(), party()
    conv = open_conversation(alice, bob)
    assert send(alice, conv, [bob.device_id]).status_code == 201
    assert_api_error(send(alice, conv, [bob.device_id]), code="RATE_LIMITED", status=429)


@override_settings(DM_MAX_MESSAGE_BYTES=64)
def test_oversized_ciphertext_is_413_and_nothing_is_stored():
    alice, bob = party(), party()
    conv = open_conversation(alice, bob)
    assert_api_error(send(alice, conv, [bob.device_id], text="A" * 68), code="PAYLOAD_TOO_LARGE", status=413)
    assert Message.objects.count() == 0


def test_ciphertext_must_be_base64():
    alice, bob = party(), party()
    conv = open_conversation(alice, bob)
    body = assert_api_error(
        send(alice, conv, [bob.device_id], text="not base64!"), code="VALIDATION_ERROR", status=400
    )
    assert "envelopes" in body["errors"]


def test_sending_needs_a_device_bound_to_the_session():
    alice, bob = party(), party()
    conv = open_conversation(alice, bob)
    deviceless = client_for(alice.user)
    resp = deviceless.post(
        f"/dm/conversations/{conv}/messages",
        {"client_message_id": "x", "envelopes": [{"device_id": bob.device_id, "ciphertext": "AA"}]},
        format="json",
    )
    assert_api_error(resp, code="DEVICE_REQUIRED", status=409)


def test_fetch_returns_the_device_queue_after_the_cursor_in_pages():
    alice, bob = party(), party()
    conv = open_conversation(alice, bob)
    ids = [send(alice, conv, [bob.device_id]).json()["message_id"] for _ in range(3)]
    page = bob.client.get("/dm/messages?since=0&limit=2").json()
    assert [m["message_id"] for m in page["messages"]] == ids[:2]
    assert page["cursor"] == 2 and page["has_more"] is True
    rest = bob.client.get(f"/dm/messages?since={page['cursor']}").json()
    assert [m["message_id"] for m in rest["messages"]] == ids[2:]
    assert rest["has_more"] is False
    # Handed over, not yet acknowledged.
    assert (
        Delivery.objects.filter(
            device_id=bob.device_id, sent_at__isnull=False, delivered_at__isnull=True
        ).count()
        == 3
    )


def test_ack_up_to_cursor_records_delivered_at():
    alice, bob = party(), party()
    conv = open_conversation(alice, bob)
    for _ in range(3):
        send(alice, conv, [bob.device_id])
    resp = bob.client.post("/dm/ack", {"up_to": 2}, format="json")
    assert resp.status_code == 200 and resp.json() == {"acknowledged": 2}
    delivered = dict(Delivery.objects.filter(device_id=bob.device_id).values_list("seq", "delivered_at"))
    assert delivered[1] and delivered[2] and delivered[3] is None


def test_ack_by_message_ids():
    alice, bob = party(), party()
    conv = open_conversation(alice, bob)
    ids = [send(alice, conv, [bob.device_id]).json()["message_id"] for _ in range(2)]
    assert bob.client.post("/dm/ack", {"message_ids": [ids[1]]}, format="json").json() == {"acknowledged": 1}
    assert Delivery.objects.get(message_id=ids[1]).delivered_at is not None
    assert Delivery.objects.get(message_id=ids[0]).delivered_at is None


def test_ack_needs_exactly_one_of_up_to_or_message_ids():
    bob = party()
    assert_api_error(bob.client.post("/dm/ack", {}, format="json"), code="VALIDATION_ERROR", status=400)


@override_settings(E2EE_DM_ENABLED=False)
def test_feature_flag_off_turns_dm_endpoints_into_403_feature_disabled(auth_client):
    for method, path in [
        ("get", "/dm/conversations"),
        ("get", "/dm/messages"),
        ("post", "/dm/ack"),
        ("get", "/e2ee/devices"),
        ("get", "/dm/sse"),
    ]:
        body = assert_api_error(getattr(auth_client, method)(path), code="FEATURE_DISABLED", status=403)
        assert body["detail"] == "E2EE DM is not enabled"


def test_dm_metrics_is_staff_only_and_reports_relay_pools_and_stats():
    alice, bob = party(), party()
    conv = open_conversation(alice, bob)
    send(alice, conv, [bob.device_id])
    assert_api_error(alice.client.get("/dm/metrics"), code="PERMISSION_DENIED", status=403)
    alice.user.is_staff = True
    alice.user.save(update_fields=["is_staff"])
    body = alice.client.get("/dm/metrics").json()
    assert body["redis_status"] == "available"
    assert body["undelivered"] == 1
    assert body["message_stats"]["last_hour"] == 1
    assert {"devices_under_5", "devices_under_10"} <= set(body["otpk_pools"])
    assert {"p95_seconds", "p99_seconds"} <= set(body["delivery_latency"])


def test_seed_001_dm_queries_run_unchanged():
    alice, bob = party(), party()
    conv = open_conversation(alice, bob)
    send(alice, conv, [bob.device_id])
    with connection.cursor() as cur:
        cur.execute(
            """SELECT sender_user_id, COUNT(*) as msg_count
FROM dm_messages
WHERE created_at > NOW() - INTERVAL '1 hour'
GROUP BY sender_user_id
ORDER BY msg_count DESC
LIMIT 10;"""
        )
        assert cur.fetchall() == [(alice.user.pk, 1)]
        cur.execute(
            """SELECT COUNT(*) as undelivered
FROM dm_messages m
LEFT JOIN dm_delivery d ON m.id = d.message_id
WHERE d.delivered_at IS NULL
AND m.created_at > NOW() - INTERVAL '5 minutes';"""
        )
        assert cur.fetchone() == (1,)


def test_one_statement_path_and_checked_path_store_the_same_rows():
    """PostgreSQL sends in one statement; SQLite (embedded mode) and refusals take the checked
    ORM path. Both must write the same thing."""
    from dm.services.messages import Envelope, _store_checked, _store_in_one_statement, send_prepare

    alice, bob = party(), party()
    bob_tablet = add_device(bob.user, "tablet")
    conv = open_conversation(alice, bob)

    def request(cmid):
        return send_prepare(
            sender_id=alice.user.pk,
            sender_device_id=alice.device_id,
            conversation_id=conv,
            client_message_id=cmid,
            envelopes=[Envelope(bob.device_id, "QUFB", 0), Envelope(bob_tablet.device_id, "QkJC", 1)],
        )

    fast = _store_in_one_statement(request("fast"))
    checked = _store_checked(request("checked"))
    assert fast is not None and not fast.duplicate and not checked.duplicate

    def rows(result):
        return sorted(
            Delivery.objects.filter(message_id=result.message.pk).values_list(
                "device_id", "recipient_user_id", "message_type", "ciphertext"
            )
        )

    assert rows(fast) == rows(checked)
    seqs = dict(Delivery.objects.filter(device_id=bob.device_id).values_list("message_id", "seq"))
    assert [seqs[fast.message.pk], seqs[checked.message.pk]] == [1, 2]
    assert sorted(f["cursor"] for _, f in fast.deliveries) == [1, 1]
    assert {d for d, _ in checked.deliveries} == {bob.device_id, bob_tablet.device_id}


def test_prometheus_exposes_dm_metrics_and_queue_gauges(client):
    alice, bob = party(), party()
    conv = open_conversation(alice, bob)
    before = REGISTRY.get_sample_value("dm_messages_sent_total") or 0
    send(alice, conv, [bob.device_id])
    assert REGISTRY.get_sample_value("dm_messages_sent_total") == before + 1
    text = client.get("/metrics", secure=True).content.decode()
    # Aggregated: no series per device (tests/ops/test_metrics.py checks the buckets).
    assert 'dm_device_queue_depth{le="1"} 1.0' in text
    assert "dm_device_queue_depth_max 1.0" in text
    assert "dm_oldest_unacked_age_seconds " in text
    assert bob.device_id not in text
    assert 'e2ee_otpk_low_devices{below="10"} 2.0' in text  # both devices registered 5 one-time keys
    assert "dm_undelivered_messages 1.0" in text
    assert "dm_delivery_latency_seconds_bucket" in text


LOOSE_INTEGERS = ["-1", " 1", "١", "1_000", "+5", "1e3", str(2**63)]


@pytest.mark.parametrize("since", LOOSE_INTEGERS)
def test_fetch_refuses_a_loose_since_and_reports_it_under_since(since):
    bob = party()
    body = assert_api_error(
        bob.client.get("/dm/messages", {"since": since}), code="VALIDATION_ERROR", status=400
    )
    assert list(body["errors"]) == ["since"]


@override_settings(DM_FETCH_PAGE_SIZE=200)
@pytest.mark.parametrize("limit", [*LOOSE_INTEGERS, "0", "201"])
def test_fetch_refuses_a_loose_or_out_of_range_limit_and_reports_it_under_limit(limit):
    bob = party()
    body = assert_api_error(
        bob.client.get("/dm/messages", {"limit": limit}), code="VALIDATION_ERROR", status=400
    )
    assert list(body["errors"]) == ["limit"]


def test_fetch_with_both_since_and_limit_bad_reports_both():
    bob = party()
    body = assert_api_error(
        bob.client.get("/dm/messages", {"since": "-1", "limit": "1e3"}), code="VALIDATION_ERROR", status=400
    )
    assert sorted(body["errors"]) == ["limit", "since"]


@override_settings(DM_FETCH_PAGE_SIZE=200)
def test_fetch_accepts_the_largest_64_bit_cursor_and_the_page_size_limit():
    alice, bob = party(), party()
    conv = open_conversation(alice, bob)
    send(alice, conv, [bob.device_id])
    resp = bob.client.get("/dm/messages", {"since": str(2**63 - 1), "limit": "200"})
    assert resp.status_code == 200, resp.content
    assert resp.json() == {"messages": [], "cursor": 2**63 - 1, "has_more": False}
    page = bob.client.get("/dm/messages", {"since": "0", "limit": "200"}).json()
    assert [m["cursor"] for m in page["messages"]] == [1]


@pytest.mark.parametrize("message_type", [0.0, 1.0, True, False, "0", "1", None, 2])
def test_send_refuses_an_envelope_type_that_is_not_the_json_integer_0_or_1(message_type):
    alice, bob = party(), party()
    conv = open_conversation(alice, bob)
    resp = alice.client.post(
        f"/dm/conversations/{conv}/messages",
        {
            "client_message_id": str(uuid.uuid4()),
            "envelopes": [{"device_id": bob.device_id, "ciphertext": "b3BhcXVl", "type": message_type}],
        },
        format="json",
    )
    body = assert_api_error(resp, code="VALIDATION_ERROR", status=400)
    assert list(body["errors"]) == ["envelopes"]
    assert list(body["errors"]["envelopes"][0]) == ["type"]
    assert Message.objects.count() == 0


@pytest.mark.parametrize("up_to", [1.0, True, "1", -1, 2**63])
def test_ack_refuses_an_up_to_that_is_not_a_json_integer_in_range(up_to):
    bob = party()
    body = assert_api_error(
        bob.client.post("/dm/ack", {"up_to": up_to}, format="json"), code="VALIDATION_ERROR", status=400
    )
    assert list(body["errors"]) == ["up_to"]


def test_opening_a_conversation_needs_a_json_integer_user_id():
    alice, bob = party(), party()
    for user_id in (str(bob.user.pk), float(bob.user.pk), 2**63):
        body = assert_api_error(
            alice.client.post("/dm/conversations", {"user_id": user_id}, format="json"),
            code="VALIDATION_ERROR",
            status=400,
        )
        assert list(body["errors"]) == ["user_id"]
