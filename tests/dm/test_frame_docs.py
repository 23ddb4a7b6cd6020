"""docs/dm.md's frame table lists exactly the fields the server sends (docs from code)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from dm import presenters
from dm.models import Device
from dm.services import messages as message_services
from tests.dm.helpers import open_conversation, party

pytestmark = pytest.mark.django_db


def documented_fields() -> dict[str, set[str]]:
    text = (Path(settings.BASE_DIR) / "docs" / "dm.md").read_text()
    section = text.split("## Frames and bodies", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if not line.startswith("| `dm."):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = set(re.findall(r"`([a-z_]+)`", cells[2]))
    return rows


def test_the_dm_frame_table_matches_what_the_server_sends():
    alice, bob = party(), party()
    conversation = open_conversation(alice, bob)
    result = message_services.message_send(
        sender_id=alice.user.pk,
        sender_device_id=alice.device_id,
        conversation_id=conversation,
        client_message_id=uuid.uuid4().hex,
        envelopes=[message_services.Envelope(bob.device_id, "QUFB", 1)],
    )
    ((_, message_frame),) = result.deliveries
    device = Device.objects.get(pk=bob.device_id)
    acked = message_services.deliveries_ack(device=device, up_to=1)

    assert documented_fields() == {
        "dm.message": set(message_frame),
        "dm.sent": {"type", *presenters.sent_body(result)},
        "dm.acked": {"type", *acked},
        "dm.synced": {"type", "cursor"},  # dm/frames.py:handle_sync
    }
