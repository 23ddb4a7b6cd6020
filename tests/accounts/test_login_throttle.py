"""The log-in throttling policy (issue 11 item 3): per (account, address) pair locks, per-address
locks that spare known pairs, and a per-account progressive delay for unknown pairs, against the
real Redis. Time moves through the throttle's clock seam (the `clock` fixture), never by sleeping.
"""

from __future__ import annotations

import logging

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from chatsite.accounts.models import SecurityEvent, Session
from chatsite.api.redis import get_redis
from tests.conftest import assert_api_error
from tests.factories import DEFAULT_PASSWORD, UserFactory
from tests.redis_server import RedisProcess, relay_on

pytestmark = pytest.mark.django_db

VICTIM_IP = "10.0.0.1"
ATTACKER_IP = "10.6.6.6"


def post_login(username: str, password: str, *, ip: str):
    return APIClient().post(
        "/auth/login", {"username": username, "password": password}, format="json", REMOTE_ADDR=ip
    )


def fail(username: str, *, ip: str, times: int = 1) -> None:
    for _ in range(times):
        assert_api_error(post_login(username, "wrong", ip=ip), code="INVALID_CREDENTIALS", status=401)


def attack(username: str, *, ip: str, times: int) -> None:
    """Wrong passwords whatever the throttle answers (401 or 429): an attacker keeps trying."""
    for _ in range(times):
        assert post_login(username, "wrong", ip=ip).status_code in (401, 429)


def assert_refused(resp) -> int:
    body = assert_api_error(resp, code="RATE_LIMITED", status=429)
    assert body["retry_in_seconds"] == int(resp["X-Retry-After"]) > 0
    return body["retry_in_seconds"]


def known_victim(**kwargs):
    """A user who has logged in from VICTIM_IP before, as a real user would have."""
    user = UserFactory(**kwargs)
    assert post_login(user.username, DEFAULT_PASSWORD, ip=VICTIM_IP).status_code == 200
    return user


# --- Per (account, address) pair ---------------------------------------------------------------


def test_failures_from_one_address_lock_that_account_and_address_pair(clock):
    user = UserFactory()
    fail(user.username, ip=ATTACKER_IP, times=settings.LOGIN_FAILURE_LIMIT)

    retry = assert_refused(post_login(user.username, DEFAULT_PASSWORD, ip=ATTACKER_IP))

    assert retry == settings.LOGIN_LOCKOUT_S
    assert not Session.objects.filter(user=user).exists()
    locked = SecurityEvent.objects.get(kind=SecurityEvent.Kind.LOGIN_LOCKED, data__by="pair")
    assert (locked.user, locked.ip, locked.flagged) == (user, ATTACKER_IP, True)


def test_pair_lock_does_not_refuse_the_victim_from_their_known_address(clock):
    victim = known_victim()
    attack(victim.username, ip=ATTACKER_IP, times=settings.LOGIN_FAILURE_LIMIT * 3)

    assert post_login(victim.username, DEFAULT_PASSWORD, ip=VICTIM_IP).status_code == 200


def test_pair_lock_does_not_refuse_the_same_account_from_another_unknown_address(clock, settings):
    # Leave the per-account delay out of it: this test is about the pair lock's scope.
    settings.LOGIN_ACCOUNT_DELAY_AFTER = 1000
    user = UserFactory()
    fail(user.username, ip=ATTACKER_IP, times=settings.LOGIN_FAILURE_LIMIT)

    assert post_login(user.username, DEFAULT_PASSWORD, ip="10.0.9.9").status_code == 200


def test_attempts_while_locked_do_not_extend_the_lock(clock):
    user = UserFactory()
    fail(user.username, ip=ATTACKER_IP, times=settings.LOGIN_FAILURE_LIMIT)
    clock.advance(settings.LOGIN_LOCKOUT_S - 10)
    for _ in range(5):
        assert_refused(post_login(user.username, "wrong", ip=ATTACKER_IP))

    clock.advance(11)

    assert post_login(user.username, DEFAULT_PASSWORD, ip=ATTACKER_IP).status_code == 200
    assert SecurityEvent.objects.filter(kind=SecurityEvent.Kind.LOGIN_FAILED).count() == (
        settings.LOGIN_FAILURE_LIMIT
    )


def test_one_failure_short_of_the_limit_does_not_lock(clock):
    user = UserFactory()
    fail(user.username, ip=ATTACKER_IP, times=settings.LOGIN_FAILURE_LIMIT - 1)

    assert post_login(user.username, DEFAULT_PASSWORD, ip=ATTACKER_IP).status_code == 200
    assert not SecurityEvent.objects.filter(kind=SecurityEvent.Kind.LOGIN_LOCKED).exists()


def test_failures_against_an_unknown_name_do_not_lock_another_account_from_that_address(clock):
    user = UserFactory()
    fail("nosuchuser", ip=ATTACKER_IP, times=settings.LOGIN_FAILURE_LIMIT)

    assert post_login(user.username, DEFAULT_PASSWORD, ip=ATTACKER_IP).status_code == 200


def test_an_unknown_name_is_locked_exactly_like_an_existing_one(clock):
    user = UserFactory()
    fail("nosuchuser", ip=ATTACKER_IP, times=settings.LOGIN_FAILURE_LIMIT)
    fail(user.username, ip=ATTACKER_IP, times=settings.LOGIN_FAILURE_LIMIT)

    unknown = post_login("nosuchuser", "wrong", ip=ATTACKER_IP)
    existing = post_login(user.username, "wrong", ip=ATTACKER_IP)

    assert (unknown.status_code, unknown.json()) == (existing.status_code, existing.json())


def test_pair_lock_logs_a_security_warning(clock, caplog):
    user = UserFactory()

    with caplog.at_level(logging.WARNING, logger="chatsite.security"):
        fail(user.username, ip=ATTACKER_IP, times=settings.LOGIN_FAILURE_LIMIT)

    locks = [r for r in caplog.records if r.name == "chatsite.security" and r.event == "login_locked"]
    assert [(r.by, r.user_id, r.ip) for r in locks] == [("pair", user.pk, ATTACKER_IP)]


# --- Per address (spraying) ----------------------------------------------------------------------


def test_spraying_from_one_address_locks_it_for_accounts_not_known_there(clock, settings):
    settings.LOGIN_IP_FAILURE_LIMIT = 6
    newcomer = UserFactory()
    for i in range(settings.LOGIN_IP_FAILURE_LIMIT):
        fail(f"target{i}", ip=ATTACKER_IP)

    assert_refused(post_login(newcomer.username, DEFAULT_PASSWORD, ip=ATTACKER_IP))
    locked = SecurityEvent.objects.get(kind=SecurityEvent.Kind.LOGIN_LOCKED, data__by="ip")
    assert locked.ip == ATTACKER_IP


def test_address_lock_does_not_refuse_a_known_pair_behind_that_address(clock, settings):
    """A bystander behind the same address (office NAT) who has logged in from it before."""
    settings.LOGIN_IP_FAILURE_LIMIT = 6
    bystander = UserFactory()
    assert post_login(bystander.username, DEFAULT_PASSWORD, ip=ATTACKER_IP).status_code == 200
    for i in range(settings.LOGIN_IP_FAILURE_LIMIT):
        fail(f"target{i}", ip=ATTACKER_IP)

    assert post_login(bystander.username, DEFAULT_PASSWORD, ip=ATTACKER_IP).status_code == 200


def test_address_lock_does_not_refuse_logins_from_other_addresses(clock, settings):
    settings.LOGIN_IP_FAILURE_LIMIT = 6
    user = UserFactory()
    for i in range(settings.LOGIN_IP_FAILURE_LIMIT):
        fail(f"target{i}", ip=ATTACKER_IP)

    assert post_login(user.username, DEFAULT_PASSWORD, ip="10.0.9.9").status_code == 200


# --- Per account, over many addresses (distributed guessing) ------------------------------------


def distributed_failures(username: str, count: int, clock) -> None:
    """`count` failures, each from a fresh address, each waiting out the delay it is told."""
    for i in range(count):
        ip = f"10.200.{i // 250}.{i % 250 + 1}"
        resp = post_login(username, "wrong", ip=ip)
        if resp.status_code == 429:
            clock.advance(resp.json()["retry_in_seconds"])
            resp = post_login(username, "wrong", ip=ip)
        assert_api_error(resp, code="INVALID_CREDENTIALS", status=401)


def test_distributed_failures_make_unknown_pairs_wait_progressively_longer(clock):
    user = UserFactory()
    base, after = settings.LOGIN_ACCOUNT_DELAY_BASE_S, settings.LOGIN_ACCOUNT_DELAY_AFTER
    waits = []
    for extra in range(3):
        distributed_failures(user.username, after if extra == 0 else 1, clock)
        waits.append(assert_refused(post_login(user.username, DEFAULT_PASSWORD, ip="10.1.2.3")))

    assert waits == [base, base * 2, base * 4]
    delayed = SecurityEvent.objects.filter(kind=SecurityEvent.Kind.LOGIN_DELAYED, user=user)
    assert [e.data["delay_s"] for e in delayed.order_by("pk")] == waits


def test_progressive_delay_is_capped(clock):
    user = UserFactory()
    distributed_failures(user.username, settings.LOGIN_ACCOUNT_DELAY_AFTER + 40, clock)

    assert assert_refused(post_login(user.username, DEFAULT_PASSWORD, ip="10.1.2.3")) == (
        settings.LOGIN_ACCOUNT_DELAY_MAX_S
    )


def test_progressive_delay_lets_an_unknown_pair_try_once_it_has_passed(clock):
    user = UserFactory()
    distributed_failures(user.username, settings.LOGIN_ACCOUNT_DELAY_AFTER + 3, clock)
    wait = assert_refused(post_login(user.username, DEFAULT_PASSWORD, ip="10.1.2.3"))

    clock.advance(wait)

    assert post_login(user.username, DEFAULT_PASSWORD, ip="10.1.2.3").status_code == 200


def test_progressive_delay_never_applies_to_a_known_pair(clock):
    victim = known_victim()
    distributed_failures(victim.username, settings.LOGIN_ACCOUNT_DELAY_AFTER + 20, clock)

    assert post_login(victim.username, DEFAULT_PASSWORD, ip=VICTIM_IP).status_code == 200


def test_progressive_delay_logs_a_security_warning(clock, caplog):
    user = UserFactory()

    with caplog.at_level(logging.WARNING, logger="chatsite.security"):
        distributed_failures(user.username, settings.LOGIN_ACCOUNT_DELAY_AFTER, clock)

    delays = [r for r in caplog.records if r.name == "chatsite.security" and r.event == "login_delayed"]
    assert [(r.by, r.user_id, r.delay_s) for r in delays] == [
        ("account", user.pk, settings.LOGIN_ACCOUNT_DELAY_BASE_S)
    ]


# --- Known pairs ---------------------------------------------------------------------------------


def test_a_known_pair_is_remembered_by_the_sessions_table_when_redis_forgets(clock):
    victim = known_victim()
    get_redis().flushdb()
    distributed_failures(victim.username, settings.LOGIN_ACCOUNT_DELAY_AFTER + 5, clock)

    assert post_login(victim.username, DEFAULT_PASSWORD, ip=VICTIM_IP).status_code == 200


def test_the_issues_reproduction_no_longer_locks_the_victim_out(clock):
    """Issue 11 item 3: failures for `ALICE` and `alice` from other addresses, renewed past every
    lock, then the victim's right password from her own address."""
    known_victim(username="alice")
    for _round in range(3):
        attack("ALICE", ip=ATTACKER_IP, times=settings.LOGIN_FAILURE_LIMIT)
        attack("alice", ip="10.6.6.7", times=settings.LOGIN_FAILURE_LIMIT)
        clock.advance(settings.LOGIN_LOCKOUT_S)

    assert post_login("alice", DEFAULT_PASSWORD, ip=VICTIM_IP).status_code == 200


def test_with_redis_down_the_pair_lock_still_holds_in_this_process(clock):
    server = RedisProcess()
    server.start()
    try:
        with relay_on(server):
            user = UserFactory()
            server.stop()
            fail(user.username, ip=ATTACKER_IP, times=settings.LOGIN_FAILURE_LIMIT)

            assert_refused(post_login(user.username, DEFAULT_PASSWORD, ip=ATTACKER_IP))
    finally:
        server.stop()
