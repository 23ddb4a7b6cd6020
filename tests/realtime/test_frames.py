"""Frames on /ws: ping and pong, errors for unknown, non-JSON, untyped and too deeply nested frames
(the socket stays open), and frames and events of a feature behind a flag."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from chatsite.realtime import registry, relay
from tests.realtime.clients import TIMEOUT, assert_alive, new_user_and_token, open_ws

pytestmark = pytest.mark.django_db(transaction=True)


async def test_ping_gets_pong_with_ref_echoed():
    _, token = await new_user_and_token()
    comm, _ = await open_ws(token)

    await comm.send_json_to({"type": "ping", "ref": "r-1"})

    assert await comm.receive_json_from(timeout=TIMEOUT) == {"type": "pong", "ref": "r-1"}
    assert await comm.receive_nothing()
    await comm.disconnect()


async def test_unknown_frame_type_gets_bad_request_error_with_ref():
    _, token = await new_user_and_token()
    comm, _ = await open_ws(token)

    await comm.send_json_to({"type": "no.such.frame", "ref": 7})

    frame = await comm.receive_json_from(timeout=TIMEOUT)
    assert frame["type"] == "error"
    assert frame["code"] == "BAD_REQUEST"
    assert frame["ref"] == 7
    assert frame["detail"]
    await assert_alive(comm)
    await comm.disconnect()


async def test_non_json_frame_gets_error_and_stays_open():
    _, token = await new_user_and_token()
    comm, _ = await open_ws(token)

    await comm.send_to(text_data="this is not json")

    frame = await comm.receive_json_from(timeout=TIMEOUT)
    assert frame["type"] == "error"
    assert frame["code"] == "BAD_REQUEST"
    await assert_alive(comm)
    await comm.disconnect()


NESTED_FRAME = '{"type":"ping","ref":' + "[" * 3000 + "]" * 3000 + "}"


async def test_deeply_nested_frame_gets_validation_error_and_stays_open():
    _, token = await new_user_and_token()
    comm, _ = await open_ws(token)
    try:
        await comm.send_to(text_data=NESTED_FRAME)

        frame = await comm.receive_json_from(timeout=TIMEOUT)
        assert frame["type"] == "error"
        assert frame["code"] == "VALIDATION_ERROR"
        await assert_alive(comm)
    finally:
        await comm.disconnect()


async def test_json_without_type_gets_error():
    _, token = await new_user_and_token()
    comm, _ = await open_ws(token)

    await comm.send_json_to(["not", "an", "object"])

    frame = await comm.receive_json_from(timeout=TIMEOUT)
    assert (frame["type"], frame["code"]) == ("error", "BAD_REQUEST")
    await comm.disconnect()


class FlaggedSource(registry.StreamSource):
    name = "test_flagged"
    feature = "groups"


async def echo_frame(stream, frame):
    return {"type": "test.echoed"}


@pytest.fixture
def flagged_plugin():
    """A throwaway domain plug-in guarded by the "groups" flag: one stream source, one frame."""
    registry.register_source(FlaggedSource())
    registry.register_frame("test.echo", echo_frame, feature="groups")
    yield
    registry._sources.pop(FlaggedSource.name, None)
    registry._frames.pop("test.echo", None)


async def test_frame_of_a_disabled_feature_gets_feature_disabled_error(settings, flagged_plugin):
    settings.GROUPS_ENABLED = False
    _, token = await new_user_and_token()
    comm, _ = await open_ws(token)

    await comm.send_json_to({"type": "test.echo", "ref": "f1"})

    frame = await comm.receive_json_from(timeout=TIMEOUT)
    assert frame == {
        "type": "error",
        "code": "FEATURE_DISABLED",
        "detail": "Groups are not enabled",
        "feature": "groups",
        "ref": "f1",
    }
    await comm.disconnect()


async def test_frame_of_an_enabled_feature_reaches_its_handler(settings, flagged_plugin):
    settings.GROUPS_ENABLED = True
    _, token = await new_user_and_token()
    comm, _ = await open_ws(token)

    await comm.send_json_to({"type": "test.echo", "ref": "f2"})

    assert await comm.receive_json_from(timeout=TIMEOUT) == {"type": "test.echoed", "ref": "f2"}
    await comm.disconnect()


async def test_flag_turned_off_mid_stream_tells_the_client_and_drops_its_events(settings, flagged_plugin):
    settings.GROUPS_ENABLED = True
    user, token = await new_user_and_token()
    comm, _ = await open_ws(token)

    settings.GROUPS_ENABLED = False

    frame = await comm.receive_json_from(timeout=TIMEOUT)  # within one tick (about a second)
    assert frame == {"type": "feature.disabled", "feature": "groups", "detail": "Groups are not enabled"}
    publish = database_sync_to_async(relay.publish_to_user)
    await publish(user.pk, {"type": "test.flagged"}, source=FlaggedSource.name)
    await publish(user.pk, {"type": "test.unflagged"})
    # Layer order is kept, so the unflagged frame coming first shows the other was dropped.
    assert await comm.receive_json_from(timeout=TIMEOUT) == {"type": "test.unflagged"}
    assert await comm.receive_nothing(timeout=0.2)
    await assert_alive(comm)  # a /ws stream carries other features too: it stays open
    await comm.disconnect()
