"""Query budgets of the hot dm endpoints, so an N+1 fails a test: the count must not grow with the
messages in a fetched page or an ack, nor with the devices a message is addressed to; a bundle
claim today costs one claim statement per device of the target, and nothing more per device.

Each budget is the count measured when it was set (listed per query below); lower it when a query
goes away, never raise it to make a test pass without finding which query was added and why.
"""

from __future__ import annotations

import pytest

from dm.models import Device, Message
from tests.dm.helpers import Party, add_device, party, send
from tests.factories import ConversationFactory, MessageFactory

pytestmark = pytest.mark.django_db

# Session by token, sender device, conversation members (cached in the process after a
# conversation's first send), the send statement itself (one, whatever the envelopes), and the
# SAVEPOINT and RELEASE around it, which only a test's transaction adds.
SEND_QUERIES = 6
# Session by token, device, the page of deliveries, marking them sent.
FETCH_QUERIES = 4
# Session, device, SAVEPOINT, queue row, deliveries, acked_seq, device last seen, RELEASE.
ACK_UP_TO_QUERIES = 8
# Session, device, SAVEPOINT, deliveries, device last seen, RELEASE.
ACK_MESSAGE_IDS_QUERIES = 6
# Session, target user, block check, SAVEPOINT, active device ids, devices with their bundles,
# one claim statement (DELETE ... RETURNING) for the first device, RELEASE.
BUNDLE_QUERIES = 8
# Each further device costs its own claim statement: bounded by E2EE_MAX_DEVICES_PER_USER.
BUNDLE_QUERIES_PER_EXTRA_DEVICE = 1


def with_devices(n: int) -> Party:
    """A user with `n` devices (the returned party holds the first)."""
    first = party()
    for _ in range(n - 1):
        add_device(first.user, "another")
    return first


def messages(sender: Party, to: Party, n: int) -> list[Message]:
    conversation = ConversationFactory(user=sender.user, other=to.user)
    device = Device.objects.get(pk=sender.device_id)
    return MessageFactory.create_batch(n, sender_device=device, conversation=conversation)


@pytest.mark.parametrize("recipient_devices", [1, 3])
def test_send_costs_the_same_for_one_or_several_recipient_devices(
    recipient_devices, django_assert_max_num_queries
):
    alice, bob = party(), with_devices(recipient_devices)
    conversation = ConversationFactory(user=alice.user, other=bob.user)
    device_ids = [str(d) for d in Device.objects.filter(user=bob.user).values_list("pk", flat=True)]

    with django_assert_max_num_queries(SEND_QUERIES):
        resp = send(alice, conversation.pk, device_ids)

    assert resp.status_code == 201, resp.content
    assert resp.json()["recipients"] == recipient_devices


@pytest.mark.parametrize("page", [1, 20])
def test_fetch_costs_the_same_for_one_or_twenty_messages(page, django_assert_max_num_queries):
    alice, bob = party(), party()
    messages(alice, bob, page)

    with django_assert_max_num_queries(FETCH_QUERIES):
        resp = bob.client.get("/dm/messages?since=0")

    assert resp.status_code == 200, resp.content
    assert len(resp.json()["messages"]) == page


@pytest.mark.parametrize("count", [1, 20])
def test_ack_up_to_costs_the_same_for_one_or_twenty_messages(count, django_assert_max_num_queries):
    alice, bob = party(), party()
    messages(alice, bob, count)

    with django_assert_max_num_queries(ACK_UP_TO_QUERIES):
        resp = bob.client.post("/dm/ack", {"up_to": count}, format="json")

    assert resp.status_code == 200, resp.content
    assert resp.json() == {"acknowledged": count}


@pytest.mark.parametrize("count", [1, 20])
def test_ack_by_message_ids_costs_the_same_for_one_or_twenty_messages(count, django_assert_max_num_queries):
    alice, bob = party(), party()
    sent = messages(alice, bob, count)

    with django_assert_max_num_queries(ACK_MESSAGE_IDS_QUERIES):
        resp = bob.client.post("/dm/ack", {"message_ids": [m.pk for m in sent]}, format="json")

    assert resp.status_code == 200, resp.content
    assert resp.json() == {"acknowledged": count}


@pytest.mark.parametrize("devices", [1, 3])
def test_bundle_claim_costs_one_claim_statement_per_device_and_nothing_more(
    devices, django_assert_max_num_queries
):
    alice, bob = party(), with_devices(devices)
    budget = BUNDLE_QUERIES + BUNDLE_QUERIES_PER_EXTRA_DEVICE * (devices - 1)

    with django_assert_max_num_queries(budget):
        resp = alice.client.get(f"/e2ee/bundles/{bob.user.pk}")

    assert resp.status_code == 200, resp.content
    assert len(resp.json()["devices"]) == devices
