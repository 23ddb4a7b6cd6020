"""Integer fields of /ws dm frames are JSON integers within 64 bits, like the REST bodies."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from tests.dm.helpers import party
from tests.realtime.clients import next_frame, ws_connect

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("since", ["1", -1, 1.0, True, 2**63])
async def test_dm_sync_with_a_since_that_is_not_a_json_integer_in_range_is_a_validation_error_frame(since):
    bob = await database_sync_to_async(party)()
    ws = await ws_connect(bob.token)
    await ws.send_json_to({"type": "dm.sync", "since": since, "ref": "s"})
    error = await next_frame(ws, "error")
    assert error["code"] == "VALIDATION_ERROR" and error["ref"] == "s"
    assert list(error["errors"]) == ["since"]
    await ws.disconnect()


@pytest.mark.parametrize("up_to", ["1", -1, 1.0, False, 2**63])
async def test_dm_ack_with_an_up_to_that_is_not_a_json_integer_in_range_is_a_validation_error_frame(up_to):
    bob = await database_sync_to_async(party)()
    ws = await ws_connect(bob.token)
    await ws.send_json_to({"type": "dm.ack", "up_to": up_to, "ref": 9})
    error = await next_frame(ws, "error")
    assert error["code"] == "VALIDATION_ERROR" and error["ref"] == 9
    assert list(error["errors"]) == ["up_to"]
    await ws.disconnect()
