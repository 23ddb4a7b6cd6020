"""Under real concurrency (16 threads, each its own PostgreSQL connection) no one-time prekey is
ever handed out twice, and prekeys_remaining ends equal to the rows left (0)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection
from django.test import override_settings

from chatsite.accounts.models import Session
from dm.models import KeyBundle, OneTimePrekey
from dm.services.bundles import bundle_claim
from tests.dm.helpers import session_client
from tests.dm.olm_client import register_device
from tests.factories import UserFactory

POOL = 40
THREADS = 16
CLAIMS_PER_THREAD = 4


def _claim_in_parallel(
    target_user_id: int, sessions: list[Session]
) -> tuple[list[dict], list[BaseException]]:
    barrier = threading.Barrier(len(sessions))
    results: list[dict] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(session: Session) -> None:
        try:
            barrier.wait(timeout=30)
            for _ in range(CLAIMS_PER_THREAD):
                bundle = bundle_claim(requester_session=session, target_user_id=target_user_id)
                with lock:
                    results.extend(bundle["devices"])
        except BaseException as exc:  # noqa: BLE001  (reported to the main thread)
            with lock:
                errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return results, errors


@pytest.mark.django_db(transaction=True)
def test_parallel_claims_never_hand_out_a_key_twice():
    assert connection.vendor == "postgresql"
    target = UserFactory()
    _, body = register_device(session_client(target)[0], n_prekeys=POOL)
    device_id = body["device_id"]
    uploaded = set(OneTimePrekey.objects.filter(device_id=device_id).values_list("key_id", flat=True))
    # Each thread is a different requester (its own rate-limit pair).
    sessions = [session_client(UserFactory())[1] for _ in range(THREADS)]

    results, errors = _claim_in_parallel(target.pk, sessions)

    assert errors == []
    assert len(results) == THREADS * CLAIMS_PER_THREAD
    one_time = [r["one_time_prekey"]["key_id"] for r in results if not r["fallback"]]
    fallbacks = [r for r in results if r["fallback"]]
    duplicates = [k for k, n in Counter(one_time).items() if n > 1]
    assert duplicates == []
    assert set(one_time) == uploaded  # every key handed out exactly once ...
    assert len(one_time) + len(fallbacks) == THREADS * CLAIMS_PER_THREAD == POOL + len(fallbacks)
    # ... and then only the fallback key.
    assert {r["one_time_prekey"]["key_id"] for r in fallbacks} == {
        KeyBundle.objects.get(pk=device_id).fallback_key_id
    }
    bundle = KeyBundle.objects.get(pk=device_id)
    assert bundle.prekeys_remaining == 0 == OneTimePrekey.objects.filter(device_id=device_id).count()


@pytest.mark.django_db(transaction=True)
@override_settings(E2EE_BUNDLE_FETCHES_PER_PAIR_PER_HOUR=1000)
def test_parallel_claims_by_one_requester_across_several_devices():
    """The same requester in every thread (a raised per-pair limit), a target with three devices:
    claims take device rows in one order, so they neither deadlock nor double-claim."""
    target = UserFactory()
    devices = [register_device(session_client(target)[0], n_prekeys=15)[1]["device_id"] for _ in range(3)]
    requester = session_client(UserFactory())[1]

    results, errors = _claim_in_parallel(target.pk, [requester] * THREADS)

    assert errors == []
    for device_id in devices:
        mine = [r for r in results if r["device_id"] == device_id]
        keys = [r["one_time_prekey"]["key_id"] for r in mine if not r["fallback"]]
        assert len(mine) == THREADS * CLAIMS_PER_THREAD
        assert len(keys) == len(set(keys)) == 15
        bundle = KeyBundle.objects.get(pk=device_id)
        assert bundle.prekeys_remaining == 0 == OneTimePrekey.objects.filter(device_id=device_id).count()


def _run(targets) -> list[BaseException]:
    """Start every callable in its own thread at once; each closes its DB connection."""
    barrier = threading.Barrier(len(targets))
    errors: list[BaseException] = []

    def wrap(fn):
        try:
            barrier.wait(timeout=30)
            fn()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=wrap, args=(fn,)) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return errors


@pytest.mark.django_db(transaction=True)
@override_settings(E2EE_BUNDLE_FETCHES_PER_PAIR_PER_HOUR=1000)
def test_uploads_and_revokes_racing_with_claims_keep_the_counter_exact():
    from dm.models import Device
    from dm.services.devices import device_revoke
    from dm.services.prekeys import prekeys_upload

    target = UserFactory()
    keep_keys, keep = register_device(session_client(target)[0], n_prekeys=10)
    _, doomed = register_device(session_client(target)[0], n_prekeys=10)
    batches = [keep_keys.one_time_keys(5) for _ in range(4)]
    requester = session_client(UserFactory())[1]
    kept_device = Device.objects.get(pk=keep["device_id"])
    doomed_device = Device.objects.get(pk=doomed["device_id"])
    handed_out: list[str] = []

    def claim():
        for _ in range(3):
            for entry in bundle_claim(requester_session=requester, target_user_id=target.pk)["devices"]:
                if entry["device_id"] == keep["device_id"] and not entry["fallback"]:
                    handed_out.append(entry["one_time_prekey"]["key_id"])

    def upload(batch):
        return lambda: prekeys_upload(device=kept_device, one_time_prekeys=batch)

    errors = _run(
        [claim] * 10
        + [upload(b) for b in batches]
        + [lambda: device_revoke(device=doomed_device, by_user=target)]
    )

    assert errors == []  # no deadlock, no constraint violation
    assert len(handed_out) == len(set(handed_out))
    left = OneTimePrekey.objects.filter(device_id=keep["device_id"]).count()
    assert KeyBundle.objects.get(pk=keep["device_id"]).prekeys_remaining == left
    assert left + len(handed_out) == 10 + 4 * 5
    assert not OneTimePrekey.objects.filter(device_id=doomed["device_id"]).exists()
    assert not KeyBundle.objects.filter(pk=doomed["device_id"]).exists()
