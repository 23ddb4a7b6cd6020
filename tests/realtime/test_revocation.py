"""ForceDisconnect (seed 002): revoking a session, disabling an account or logging out closes the
sockets concerned with 4401 within a second; a session deleted by the runbook's SQL, at the next
heartbeat."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.db import connection

from chatsite.accounts import services as account_services
from chatsite.accounts.models import Session
from tests.conftest import login
from tests.realtime.clients import TIMEOUT, assert_alive, new_user_and_token, open_ws, until_closed

pytestmark = pytest.mark.django_db(transaction=True)


async def test_revoking_a_session_closes_its_socket_with_4401_within_a_second():
    user, token = await new_user_and_token()
    other_token = await database_sync_to_async(login)(user)
    doomed, hello = await open_ws(token)
    survivor, _ = await open_ws(other_token)

    await database_sync_to_async(account_services.session_revoke)(user=user, session_id=hello["session_id"])

    code, _ = await until_closed(doomed, timeout=1.0)
    assert code == 4401
    await assert_alive(survivor)
    assert await survivor.receive_nothing()
    await doomed.disconnect()
    await survivor.disconnect()


async def test_disabling_an_account_closes_all_its_sockets():
    user, token = await new_user_and_token()
    other_token = await database_sync_to_async(login)(user)
    _, bystander_token = await new_user_and_token()
    sockets = [(await open_ws(token))[0], (await open_ws(other_token))[0]]
    bystander, _ = await open_ws(bystander_token)

    await database_sync_to_async(account_services.account_disable)(user=user)

    for comm in sockets:
        code, _ = await until_closed(comm, timeout=1.0)
        assert code == 4401
    await assert_alive(bystander)
    for comm in (*sockets, bystander):
        await comm.disconnect()


async def test_logout_closes_that_sessions_socket():
    user, token = await new_user_and_token()
    comm, hello = await open_ws(token)
    session = await database_sync_to_async(Session.objects.get)(pk=hello["session_id"])

    await database_sync_to_async(account_services.session_logout)(session=session)

    code, _ = await until_closed(comm, timeout=1.0)
    assert code == 4401
    await comm.disconnect()


async def test_runbook_sql_session_delete_closes_the_socket_at_the_next_heartbeat(settings):
    # Seed 002's `DELETE FROM sessions` bypasses the services (no ForceDisconnect event): the
    # stream notices at its next heartbeat, when it re-checks that its session is live.
    settings.WS_PING_INTERVAL_MS = 300
    user, token = await new_user_and_token()
    comm, _ = await open_ws(token)

    def run_runbook_sql():
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM sessions WHERE user_id = %s", [user.pk])

    await database_sync_to_async(run_runbook_sql)()

    code, frames = await until_closed(comm, timeout=TIMEOUT)
    assert code == 4401
    assert frames[-1] == {"type": "closing", "code": 4401, "reason": "session ended"}
    await comm.disconnect()
