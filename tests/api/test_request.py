"""The client address (chatsite/api/request.py): X-Forwarded-For counts only from TRUSTED_PROXIES,
and then the right-most hop that is not one of them is the client."""

from __future__ import annotations

import pytest

from chatsite.accounts.models import Session
from chatsite.api.request import client_ip_from
from tests.factories import DEFAULT_PASSWORD

LB = "10.0.0.5"


@pytest.fixture
def behind_proxies(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8", "fd00::/8"]


def test_a_direct_client_forging_x_forwarded_for_is_ignored(behind_proxies):
    assert client_ip_from("1.2.3.4", "198.51.100.7") == "198.51.100.7"


def test_without_trusted_proxies_x_forwarded_for_is_ignored_even_from_a_private_peer(settings):
    settings.TRUSTED_PROXIES = []
    assert client_ip_from("1.2.3.4", LB) == LB


def test_behind_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client(behind_proxies):
    # The client wrote "6.6.6.6" itself; our balancer appended the address it saw, 203.0.113.9,
    # and an inner proxy of ours appended the balancer's.
    assert client_ip_from("6.6.6.6, 203.0.113.9, 10.0.0.9", LB) == "203.0.113.9"


def test_repeated_x_forwarded_for_headers_are_read_as_one_list(behind_proxies):
    # Django and our ASGI header helper join repeated headers with commas.
    assert client_ip_from("6.6.6.6,203.0.113.9", LB) == "203.0.113.9"


def test_when_every_hop_is_a_trusted_proxy_the_left_most_is_the_client(behind_proxies):
    assert client_ip_from("10.1.1.1, 10.2.2.2", LB) == "10.1.1.1"


def test_a_malformed_hop_stops_at_the_proxy_that_passed_it_on(behind_proxies):
    assert client_ip_from("203.0.113.9, not-an-address, 10.0.0.9", LB) == "10.0.0.9"


def test_hops_with_ports_and_ipv6_peers_are_understood(behind_proxies):
    assert client_ip_from("[2001:db8::1]:4711", "fd00::1") == "2001:db8::1"
    assert client_ip_from("203.0.113.9:4711", f"::ffff:{LB}") == "203.0.113.9"


def test_a_peer_that_is_not_an_address_is_returned_as_is(behind_proxies):
    assert client_ip_from("1.2.3.4", "unix-socket") == "unix-socket"
    assert client_ip_from("", None) is None


@pytest.mark.django_db
def test_rest_records_the_peer_when_a_direct_client_forges_x_forwarded_for(api_client, user, behind_proxies):
    resp = api_client.post(
        "/auth/login",
        {"username": user.username, "password": DEFAULT_PASSWORD},
        format="json",
        REMOTE_ADDR="198.51.100.7",
        HTTP_X_FORWARDED_FOR="1.2.3.4",
    )

    assert resp.status_code == 200, resp.content
    assert Session.objects.get(pk=resp.json()["session_id"]).ip == "198.51.100.7"


@pytest.mark.django_db
def test_rest_behind_a_trusted_proxy_records_the_rightmost_untrusted_hop(api_client, user, behind_proxies):
    resp = api_client.post(
        "/auth/login",
        {"username": user.username, "password": DEFAULT_PASSWORD},
        format="json",
        REMOTE_ADDR=LB,
        HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9",
    )

    assert resp.status_code == 200, resp.content
    assert Session.objects.get(pk=resp.json()["session_id"]).ip == "203.0.113.9"
