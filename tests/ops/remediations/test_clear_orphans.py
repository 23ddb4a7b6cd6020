"""`manage.py clear_orphans --kind KIND|all`: rows whose parent is gone (seed 000 §9) are deleted,
exactly the ones listed, every kind in one transaction with one audit row; a group_delivery
position is repointed rather than deleted where it can be; a dry run changes nothing."""

from __future__ import annotations

import uuid

import pytest
from django.core.management import CommandError

from chatsite.accounts.models import SecurityEvent
from dm.models import Delivery as DmDelivery
from groups.models import Delivery as GroupDelivery
from groups.models import GroupMessage
from ops.remediations.orphans import Orphans, orphans_clear_planned
from status.models import StatusAudience, StatusView
from tests.factories import DeviceFactory, GroupFactory, MessageFactory, UserFactory
from tests.ops.remediations.helpers import audits, foreign_keys_off, run

pytestmark = pytest.mark.django_db

SECRET = "T1JQSEFORURDSVBIRVJURVhU"  # an "opaque ciphertext" that must never be printed
MISSING_ID = 987654321


def orphans() -> dict[str, list[int]]:
    """One orphaned row of each kind, left by writes with foreign keys off."""
    user = UserFactory()
    device = DeviceFactory(user=user)
    group = GroupFactory(owner=user)
    with foreign_keys_off():
        rows = {
            "group_delivery": GroupDelivery.objects.create(
                group=group, device=device, message_id=MISSING_ID, acked_seq=1
            ),
            "status_audience": StatusAudience.objects.create(post_id=uuid.uuid4(), viewer=user),
            "status_views": StatusView.objects.create(post_id=uuid.uuid4(), viewer=user),
            "dm_delivery": DmDelivery.objects.create(
                message_id=MISSING_ID, device=device, recipient_user=user, seq=99, ciphertext=SECRET
            ),
        }
    return {kind: [row.pk] for kind, row in rows.items()}


def test_dry_run_lists_every_kind_and_deletes_nothing():
    ids = orphans()

    out = run("clear_orphans", "--kind", "all", "--dry-run")

    assert f"Would repair or delete 1 orphaned group_delivery row(s): ids {ids['group_delivery'][0]}" in out
    for kind in ("status_audience", "status_views", "dm_delivery"):
        assert f"Would delete 1 orphaned {kind} row(s): ids {ids[kind][0]}" in out
    assert SECRET not in out
    assert GroupDelivery.objects.filter(pk__in=ids["group_delivery"]).exists()
    assert DmDelivery.objects.filter(pk__in=ids["dm_delivery"]).exists()
    assert StatusAudience.objects.filter(pk__in=ids["status_audience"]).exists()
    assert StatusView.objects.filter(pk__in=ids["status_views"]).exists()
    assert audits(SecurityEvent.Kind.REMEDIATION_APPLIED) == []


def test_one_kind_deletes_only_its_orphans_and_keeps_healthy_rows():
    ids = orphans()
    healthy = MessageFactory()  # a message with a live delivery: not an orphan
    healthy_delivery = DmDelivery.objects.get(message=healthy)

    out = run("clear_orphans", "--kind", "dm_delivery", "--yes", "--reason", "restore of 3 May")

    assert not DmDelivery.objects.filter(pk__in=ids["dm_delivery"]).exists()
    assert DmDelivery.objects.filter(pk=healthy_delivery.pk).exists()
    assert GroupDelivery.objects.filter(pk__in=ids["group_delivery"]).exists()  # another kind
    assert f"Deleted 1 orphaned dm_delivery row(s): ids {ids['dm_delivery'][0]}" in out
    assert SECRET not in out
    [event] = audits(SecurityEvent.Kind.REMEDIATION_APPLIED)
    assert event.data["orphan_kinds"] == ["dm_delivery"]
    assert event.data["kinds"]["dm_delivery"]["deleted"] == 1
    assert event.data["kinds"]["dm_delivery"]["first_ids"] == ids["dm_delivery"]
    assert event.data["reason"] == "restore of 3 May"


def test_all_kinds_are_cleared_in_one_run_with_one_audit_row(settings):
    settings.OPS_ORPHAN_DELETE_BATCH = 1
    ids = orphans()

    run("clear_orphans", "--kind", "all", "--yes")

    assert not GroupDelivery.objects.filter(pk__in=ids["group_delivery"]).exists()  # no message to repoint to
    assert not StatusAudience.objects.filter(pk__in=ids["status_audience"]).exists()
    assert not StatusView.objects.filter(pk__in=ids["status_views"]).exists()
    assert not DmDelivery.objects.filter(pk__in=ids["dm_delivery"]).exists()
    [event] = audits(SecurityEvent.Kind.REMEDIATION_APPLIED)
    assert sorted(event.data["orphan_kinds"]) == sorted(ids)
    assert event.data["deleted"] == 4


def group_message(group, seq: int) -> GroupMessage:
    return GroupMessage.objects.create(
        group=group, seq=seq, group_epoch=1, sender_key_id="sk1", client_message_id=f"c{seq}"
    )


def test_an_orphaned_group_position_is_repointed_to_the_latest_message_at_or_before_it():
    user = UserFactory()
    device = DeviceFactory(user=user)
    group = GroupFactory(owner=user)
    group_message(group, 1)
    at_or_before = group_message(group, 3)
    group_message(group, 7)  # after the position: not acknowledged
    with foreign_keys_off():
        position = GroupDelivery.objects.create(
            group=group, device=device, message_id=MISSING_ID, acked_seq=5
        )

    out = run("clear_orphans", "--kind", "group_delivery", "--yes")

    position.refresh_from_db()
    assert (position.message_id, position.acked_seq) == (at_or_before.pk, 5)
    assert f"Repaired 1 orphaned group_delivery row(s): ids {position.pk}" in out
    [event] = audits(SecurityEvent.Kind.REMEDIATION_APPLIED)
    assert event.data["kinds"]["group_delivery"]["repaired"] == 1
    assert event.data["kinds"]["group_delivery"]["deleted"] == 0


def test_an_orphaned_group_position_with_no_message_at_or_before_it_is_deleted():
    user = UserFactory()
    device = DeviceFactory(user=user)
    group = GroupFactory(owner=user)
    group_message(group, 9)  # after the position only
    with foreign_keys_off():
        position = GroupDelivery.objects.create(
            group=group, device=device, message_id=MISSING_ID, acked_seq=5
        )

    run("clear_orphans", "--kind", "group_delivery", "--yes")

    assert not GroupDelivery.objects.filter(pk=position.pk).exists()


def test_only_the_planned_rows_still_orphaned_are_deleted():
    ids = orphans()
    healthy = DmDelivery.objects.get(message=MessageFactory())  # planned, but its parent exists (again)
    plan = Orphans(kind="dm_delivery", table="dm_delivery", ids=[*ids["dm_delivery"], healthy.pk])
    with foreign_keys_off():  # an orphan that appears after the plan was shown
        later = DmDelivery.objects.create(
            message_id=MISSING_ID, device=healthy.device, recipient_user=healthy.recipient_user, seq=100
        )

    [done] = orphans_clear_planned(plans=[plan], by=None)

    assert done.ids == ids["dm_delivery"]
    assert DmDelivery.objects.filter(pk__in=[healthy.pk, later.pk]).count() == 2


def test_an_unknown_kind_is_refused():
    with pytest.raises(CommandError):
        run("clear_orphans", "--kind", "users", "--yes")
