"""`manage.py revoke_device` over dm.services.devices.device_revoke (the API's and the admin's
service): a dry run changes nothing; the real run revokes, with who and why in the security event."""

from __future__ import annotations

import pytest
from django.core.management import CommandError

from chatsite.accounts.models import SecurityEvent, Session
from dm.models import Device, KeyBundle
from tests.factories import DeviceFactory, UserFactory
from tests.ops.remediations.helpers import audits, run

pytestmark = pytest.mark.django_db


def test_dry_run_prints_what_goes_and_changes_nothing():
    device = DeviceFactory(one_time_prekeys=3)

    out = run("revoke_device", str(device.pk), "--dry-run")

    assert f"Would revoke device {device.pk}" in out
    assert "end 1 session(s)" in out and "3 one-time prekey(s)" in out
    assert device.identity_key not in out and device.signing_key not in out
    device.refresh_from_db()
    assert device.status == Device.Status.ACTIVE
    assert KeyBundle.objects.filter(pk=device.pk).exists()


def test_revokes_with_who_and_why_in_the_security_event():
    device = DeviceFactory()
    operator = UserFactory(is_staff=True)

    run("revoke_device", str(device.pk), "--yes", "--by", operator.username, "--reason", "stolen phone")

    device.refresh_from_db()
    assert device.status == Device.Status.REVOKED
    assert not Session.objects.filter(device_id=device.pk, revoked_at__isnull=True).exists()
    [event] = audits(SecurityEvent.Kind.DEVICE_REVOKED)
    assert (event.data["by"], event.data["reason"]) == (operator.pk, "stolen phone")


def test_an_already_revoked_device_is_refused():
    device = DeviceFactory()
    run("revoke_device", str(device.pk), "--yes")

    with pytest.raises(CommandError, match="already revoked"):
        run("revoke_device", str(device.pk), "--yes")
