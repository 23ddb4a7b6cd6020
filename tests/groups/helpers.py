"""Group messaging test helpers: a group through the services, sender-key distribution, sends
and pages through the REST API (as a client does)."""

from __future__ import annotations

import uuid

from django.db import transaction

from groups.models import Group
from groups.selectors.members import member_devices
from groups.services.members import _admit, group_create

CT = "bWVnb2xt"  # opaque base64


def make_group(owner, *members) -> Group:
    with transaction.atomic():
        group = group_create(user_id=owner.user.pk, title="team")
        for member in members:
            _admit(group_id=group.pk, user_id=member.user.pk)
    return Group.objects.get(pk=group.pk)


def epoch(group) -> int:
    return Group.objects.get(pk=group.pk).group_epoch


def distribute(sender, group, key_id="sk1", *, group_epoch=None, envelopes=None, **extra):
    if envelopes is None:
        envelopes = [
            {"device_id": str(d), "ciphertext": "b2xt", "message_type": 0}
            for _u, d in member_devices(group.pk)
            if str(d) != sender.device_id
        ]
    return sender.client.post(
        f"/groups/{group.pk}/sender-keys",
        {
            "group_epoch": group_epoch or epoch(group),
            "sender_key_id": key_id,
            "envelopes": envelopes,
            **extra,
        },
        format="json",
    )


def send(sender, group, *, key_id="sk1", cmid=None, group_epoch=None, ciphertext=CT):
    return sender.client.post(
        f"/groups/{group.pk}/messages",
        {
            "group_epoch": group_epoch or epoch(group),
            "sender_key_id": key_id,
            "client_message_id": cmid or uuid.uuid4().hex,
            "ciphertext": ciphertext,
        },
        format="json",
    )


def page(reader, group, since=0, limit=None):
    url = f"/groups/{group.pk}/messages?since={since}" + (f"&limit={limit}" if limit else "")
    resp = reader.client.get(url)
    assert resp.status_code == 200, resp.content
    return resp.json()
