"""status.posted and status.rekey reach the live /ws streams of the audience through the real
relay, after commit; nobody outside the audience gets them; with status off, the stream drops them."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from chatsite.accounts.models import Contact
from status.services import posts as services
from tests.realtime.clients import frames_for, new_user_and_token, next_frame, open_ws

pytestmark = pytest.mark.django_db(transaction=True)


async def _contacts(owner, *others):
    for other in others:
        await Contact.objects.acreate(owner=owner, contact=other)


async def test_status_posted_and_rekey_reach_the_audiences_streams_only():
    alice, alice_token = await new_user_and_token()
    bob, bob_token = await new_user_and_token()
    carol, carol_token = await new_user_and_token()
    await _contacts(alice, bob, carol)
    bob_ws, _ = await open_ws(bob_token)
    carol_ws, _ = await open_ws(carol_token)
    alice_ws, _ = await open_ws(alice_token)

    post = await database_sync_to_async(services.post_create)(
        user_id=alice.pk, audience_mode="only", audience=[bob.pk], ciphertext="eA"
    )

    posted = await next_frame(bob_ws, "status.posted")
    assert posted["post_id"] == str(post.pk) and posted["owner_user_id"] == alice.pk
    assert not [f for f in await frames_for(carol_ws, 0.3) if f["type"].startswith("status.")]

    await database_sync_to_async(services.audience_update)(
        user_id=alice.pk, post_id=post.pk, audience_mode="only", audience=[carol.pk]
    )

    to_owner = await next_frame(alice_ws, "status.rekey")
    assert to_owner["post_epoch"] == 2 and to_owner["added"] == [carol.pk] and to_owner["removed"] == [bob.pk]
    assert (await next_frame(carol_ws, "status.rekey"))["post_epoch"] == 2
    assert not [f for f in await frames_for(bob_ws, 0.3) if f["type"] == "status.rekey"]
    for comm in (alice_ws, bob_ws, carol_ws):
        await comm.disconnect()


async def test_with_status_off_the_stream_drops_status_events(settings):
    alice, _ = await new_user_and_token()
    bob, bob_token = await new_user_and_token()
    await _contacts(alice, bob)
    settings.STATUS_ENABLED = False
    bob_ws, _ = await open_ws(bob_token)

    await database_sync_to_async(services.post_create)(
        user_id=alice.pk, audience_mode="contacts", ciphertext="eA"
    )

    assert not [f for f in await frames_for(bob_ws, 0.5) if f["type"] == "status.posted"]
    await bob_ws.disconnect()
