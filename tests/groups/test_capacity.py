"""Capacity and invite uses are exact under real concurrency: every request in its own thread
with its own PostgreSQL connection (Django's pool hands each thread a real connection), all
released together by a barrier."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest
from django.db import connection

from chatsite.api.errors import ApiError
from groups.models import Group, Invite, InviteRedemption, Participant
from groups.services.invites import invite_create, invite_redeem
from tests.factories import GroupFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def run_in_parallel(calls: list[Callable[[], object]]) -> list[object]:
    """Run each call in its own thread at the same moment; each result is the return value or
    the ApiError code raised (any other exception fails the test)."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)
    unexpected: list[BaseException] = []

    def worker(i: int, call: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout=60)
            results[i] = call()
        except ApiError as exc:
            results[i] = exc.code
        except BaseException as exc:  # noqa: BLE001  (reported to the main thread)
            unexpected.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert unexpected == []
    return results


def test_150_simultaneous_joins_admit_exactly_100():
    assert connection.vendor == "postgresql"
    owner = UserFactory()
    group = GroupFactory(owner=owner)
    assert group.max_participants == 100
    code = invite_create(user_id=owner.pk, group_id=group.pk).code
    others = [UserFactory() for _ in range(149)]
    # 150 joins: the owner (already a member: idempotent) and 149 others, of whom 99 fit.
    joiners = [owner.pk, *(u.pk for u in others)]

    results = run_in_parallel([lambda uid=uid: invite_redeem(code=code, user_id=uid) for uid in joiners])

    joined = [r for r in results if not isinstance(r, str)]
    outcomes = Counter("GROUP_FULL" if r == "GROUP_FULL" else "ok" for r in results)
    assert outcomes == {"ok": 100, "GROUP_FULL": 50}
    assert sum(r.joined for r in joined) == 99  # the owner's was idempotent
    members = list(Participant.objects.filter(group=group, is_banned=False).values_list("user_id", flat=True))
    assert len(members) == 100 == len(set(members))
    assert Participant.objects.filter(group=group).count() == 100
    group = Group.objects.get(pk=group.pk)
    assert group.member_count == 100 == Participant.objects.filter(group=group, is_banned=False).count()
    invite = Invite.objects.get(code=code)
    assert invite.uses == 99 == InviteRedemption.objects.filter(invite=invite).count()
    assert Participant.objects.filter(group=group, role="owner").count() == 1


def test_20_simultaneous_redemptions_of_a_5_use_invite():
    owner = UserFactory()
    group = GroupFactory(owner=owner)
    code = invite_create(user_id=owner.pk, group_id=group.pk, max_uses=5).code
    users = [UserFactory() for _ in range(20)]

    results = run_in_parallel([lambda uid=u.pk: invite_redeem(code=code, user_id=uid) for u in users])

    outcomes = Counter("MAX_USES" if r == "MAX_USES" else ("joined" if r.joined else r) for r in results)
    assert outcomes == {"joined": 5, "MAX_USES": 15}
    invite = Invite.objects.get(code=code)
    assert invite.uses == 5
    redemptions = list(InviteRedemption.objects.filter(invite=invite).values_list("user_id", flat=True))
    assert len(redemptions) == 5 == len(set(redemptions))
    group = Group.objects.get(pk=group.pk)
    assert group.member_count == 6 == Participant.objects.filter(group=group, is_banned=False).count()
    assert set(redemptions) | {owner.pk} == set(
        Participant.objects.filter(group=group).values_list("user_id", flat=True)
    )
