"""`manage.py revoke_device DEVICE_ID [--reason R] [--by U] [--dry-run] [--yes]`: revoke one E2EE
device (its sessions end, its keys and undelivered messages are deleted, its streams close)
through dm.services.devices.device_revoke, the service of `DELETE /e2ee/devices/{id}` and the
admin's "Revoke devices"; the DEVICE_REVOKED security event is the audit row."""

from __future__ import annotations

import uuid

from django.core.management.base import CommandError

from chatsite.api.errors import ApiError
from dm.models import Device
from dm.selectors.devices import device_revoke_plan
from dm.services.devices import device_revoke
from ops.remediations.cli import RemediationCommand, api_error


class Command(RemediationCommand):
    help = "Revoke an E2EE device (sessions, keys and queued messages go; streams close)."

    def add_arguments(self, parser):
        parser.add_argument("device_id")
        super().add_arguments(parser)

    def handle(self, *args, device_id, dry_run, yes, by, reason, **options):
        operator = self.operator(by)
        try:
            device = Device.objects.select_related("user").filter(pk=uuid.UUID(device_id)).first()
        except ValueError as exc:
            raise CommandError(f"{device_id!r} is not a device id (a UUID).") from exc
        if device is None:
            raise CommandError(f"No device {device_id}.")
        if device.status == Device.Status.REVOKED:
            raise CommandError(f"Device {device.pk} is already revoked.")
        self.plan([f"Would revoke {device_revoke_plan(device).describe()}."])
        if not self.confirmed(dry_run=dry_run, yes=yes):
            return
        try:
            device_revoke(device=device, by_user=operator, reason=reason)
        except ApiError as exc:
            raise api_error(exc) from exc
        self.done(f"Revoked device {device.pk}.")
