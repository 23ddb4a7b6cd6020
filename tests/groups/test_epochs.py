"""Epochs move with membership and with members' devices (the real device paths), and a stale
sender is told what changed."""

from __future__ import annotations

import pytest
from django.db import transaction

from dm.models import Device
from dm.services.devices import device_revoke
from tests.conftest import assert_api_error
from tests.dm.helpers import add_device, party
from tests.groups.helpers import distribute, epoch, make_group, send

pytestmark = pytest.mark.django_db(transaction=True)


def test_admitting_a_member_bumps_the_epoch():
    from groups.services.members import _admit

    alice, bob = party(), party()
    group = make_group(alice)
    before = epoch(group)
    with transaction.atomic():
        _admit(group_id=group.pk, user_id=bob.user.pk)
    assert epoch(group) == before + 1


def test_a_members_new_device_bumps_the_epoch_and_is_reported():
    alice, bob = party(), party()
    group = make_group(alice, bob)
    old = epoch(group)
    distribute(alice, group)
    laptop = add_device(bob.user, name="laptop")  # dm's device_register, as the API calls it
    assert epoch(group) == old + 1
    body = assert_api_error(send(alice, group, group_epoch=old), code="EPOCH_STALE", status=409)
    assert body["group_epoch"] == old + 1
    assert body["changes"]["devices_added"] == [
        {"group_epoch": old + 1, "user_id": bob.user.pk, "device_id": laptop.device_id}
    ]
    # The next distribution must include the new device.
    stale_set = [{"device_id": bob.device_id, "ciphertext": "b2xt"}]
    missing = assert_api_error(
        distribute(alice, group, envelopes=stale_set), code="DEVICE_MISMATCH", status=409
    )
    assert missing["missing_devices"] == [laptop.device_id]
    assert distribute(alice, group, "k2").status_code == 201
    assert send(alice, group, key_id="k2").status_code == 201


def test_a_revoked_device_bumps_the_epoch_and_is_reported():
    alice, bob = party(), party()
    laptop = add_device(bob.user, name="laptop")
    group = make_group(alice, bob)
    old = epoch(group)
    device_revoke(device=Device.objects.get(pk=laptop.device_id), by_user=bob.user)
    assert epoch(group) == old + 1
    body = assert_api_error(distribute(alice, group, group_epoch=old), code="EPOCH_STALE", status=409)
    assert body["changes"]["devices_removed"] == [
        {"group_epoch": old + 1, "user_id": bob.user.pk, "device_id": laptop.device_id}
    ]
    assert body["changes"]["members_added"] == [] and body["changes"]["devices_added"] == []


def test_changes_accumulate_over_several_epochs():
    from groups.services.members import _admit

    alice, bob, carol = party(), party(), party()
    group = make_group(alice)
    old = epoch(group)
    with transaction.atomic():
        _admit(group_id=group.pk, user_id=bob.user.pk)
    with transaction.atomic():
        _admit(group_id=group.pk, user_id=carol.user.pk)
    distribute(alice, group)
    body = assert_api_error(send(alice, group, group_epoch=old), code="EPOCH_STALE", status=409)
    assert [c["user_id"] for c in body["changes"]["members_added"]] == [bob.user.pk, carol.user.pk]
    assert [c["group_epoch"] for c in body["changes"]["members_added"]] == [old + 1, old + 2]
