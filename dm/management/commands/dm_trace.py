"""Where is a message? Which devices have it queued, handed over or acknowledged, and when.

Shows metadata only, never ciphertext (seed 001: never decrypt or view message content).
"""

import json

from django.core.management.base import BaseCommand, CommandError

from dm.selectors.messages import message_trace


class Command(BaseCommand):
    help = "Trace a DM's delivery per recipient device (no content)."

    def add_arguments(self, parser):
        parser.add_argument("message_id", type=int)
        parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")

    def handle(self, *args, message_id: int, **options):
        trace = message_trace(message_id=message_id)
        if trace is None:
            raise CommandError(f"No message {message_id}.")
        if options["json"]:
            self.stdout.write(json.dumps(trace, default=str, indent=2))
            return
        self.stdout.write(
            f"message {trace['message_id']} conversation {trace['conversation_id']} "
            f"from user {trace['sender_user_id']} device {trace['sender_device_id']} at {trace['created_at']}"
        )
        for d in trace["devices"]:
            self.stdout.write(
                f"  {d['device_id']} user={d['user_id']} cursor={d['cursor']} {d['state']:<12} "
                f"queued={d['queued_at']} sent={d['sent_at']} acked={d['acknowledged_at']}"
            )
        for d in trace["revoked_devices"]:
            self.stdout.write(
                f"  {d['device_id']} user={d['user_id']} revoked at {d['revoked_at']}: its queued "
                "deliveries were deleted with it"
            )
        if not trace["devices"] and not trace["revoked_devices"]:
            self.stdout.write(
                "  no delivery rows left: acknowledged deliveries are purged after "
                "DM_ACKED_RETENTION_HOURS, unacknowledged ones after DM_UNACKED_RETENTION_DAYS"
            )
