"""Feature flags at runtime: overrides in feature_flags, audited, followed by every process;
MESSAGE_WRITE off refuses every message write (503) while reads keep working (seed 004)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, transaction
from django.test import override_settings

from chatsite.accounts.models import SecurityEvent
from chatsite.api import flags, selectors, services
from chatsite.api.models import FeatureFlag
from dm.models import Message
from groups.models import GroupMessage
from tests.conftest import assert_api_error, login
from tests.dm.helpers import open_conversation, party, send
from tests.factories import UserFactory
from tests.groups.helpers import distribute, make_group
from tests.groups.helpers import send as group_send
from tests.live import live_daphne
from tests.realtime.clients import next_frame, ws_connect

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_overrides_leak():
    """Overrides committed here must not reach later tests through this process's memory."""
    flags.overrides.forget()
    yield
    FeatureFlag.objects.all().delete()
    flags.overrides.forget()


def test_flag_set_overrides_the_environment_in_this_process_at_commit():
    with override_settings(GROUPS_ENABLED=True):
        services.flag_set(name="GROUPS", enabled=False, by=None, reason="incident 42")
        assert flags.is_enabled("groups") is False
        assert FeatureFlag.objects.get(name="GROUPS").enabled is False


def test_flag_set_writes_an_audit_row_with_who_why_before_and_after():
    staff = UserFactory(is_staff=True)
    services.flag_set(name="e2ee_dm", enabled=False, by=staff, reason="rollback, seed 001")

    event = SecurityEvent.objects.get(kind=SecurityEvent.Kind.FEATURE_FLAG_CHANGED)
    assert event.data == {
        "by": staff.pk,
        "reason": "rollback, seed 001",
        "flag": "E2EE_DM",
        "before": True,
        "after": False,
        "source": "override",
    }


def test_flag_clear_returns_to_the_environment_default_and_is_audited():
    with override_settings(STATUS_ENABLED=False):
        services.flag_set(name="STATUS", enabled=True, by=None, reason="try it")
        assert flags.is_enabled("status") is True

        change = services.flag_clear(name="STATUS", by=None, reason="done")

        assert flags.is_enabled("status") is False
        assert (change.before, change.after, change.source) == (True, False, "environment")
    assert not FeatureFlag.objects.exists()
    kinds = list(SecurityEvent.objects.order_by("id").values_list("data__source", flat=True))
    assert kinds == ["override", "environment"]


def test_without_an_override_the_setting_decides_at_call_time():
    with override_settings(PRESENCE_ENABLED=False):
        assert flags.is_enabled("presence") is False
    with override_settings(PRESENCE_ENABLED=True):
        assert flags.is_enabled("presence") is True


def test_an_unknown_flag_name_is_refused_by_the_database():
    with pytest.raises(IntegrityError), transaction.atomic():
        FeatureFlag.objects.create(name="MESAGE_WRITE", enabled=False)


def test_the_refresher_reads_a_change_committed_by_another_connection():
    # Written as another process would: straight to the table, nothing applied in this process.
    FeatureFlag.objects.create(name="GROUPS", enabled=False, reason="other process")
    assert flags.overrides.refresh() is True
    assert flags.is_enabled("groups") is False


def test_a_second_process_follows_a_change_within_the_refresh_interval():
    user = UserFactory()
    token = login(user)
    refresh_s = 0.5
    with live_daphne({"FEATURE_FLAG_REFRESH_S": str(refresh_s), "GROUPS_ENABLED": "true"}) as server:
        assert server.request("GET", "/groups", token=token)[0] == 200

        services.flag_set(name="GROUPS", enabled=False, by=None, reason="incident")
        started = time.monotonic()
        while (answer := server.request("GET", "/groups", token=token))[0] == 200:
            assert time.monotonic() - started < refresh_s + 5, "the server never followed"
            time.sleep(0.05)
        followed_off = time.monotonic() - started
        assert answer == (
            403,
            {"code": "FEATURE_DISABLED", "detail": "Groups are not enabled", "feature": "groups"},
        )

        services.flag_clear(name="GROUPS", by=None, reason="resolved")
        started = time.monotonic()
        while server.request("GET", "/groups", token=token)[0] != 200:
            assert time.monotonic() - started < refresh_s + 5, "the server never went back to the env default"
            time.sleep(0.05)
    # Measured: within one refresh interval plus a request or two.
    assert followed_off < refresh_s + 2


# --- MESSAGE_WRITE: the data-corruption runbook's switch ------------------------------------------


def _writes_off():
    services.flag_set(name="MESSAGE_WRITE", enabled=False, by=None, reason="data corruption, seed 004")


def test_message_write_off_refuses_a_dm_send_with_503_and_stores_nothing():
    alice, bob = party(), party()
    conversation = open_conversation(alice, bob)
    _writes_off()

    body = assert_api_error(
        send(alice, conversation, [bob.device_id]), code="MESSAGE_WRITE_DISABLED", status=503
    )

    assert body["feature"] == "message_write"
    assert not Message.objects.exists()


def test_message_write_off_keeps_dm_reads_working():
    alice, bob = party(), party()
    conversation = open_conversation(alice, bob)
    assert send(alice, conversation, [bob.device_id]).status_code == 201
    _writes_off()

    assert bob.client.get("/dm/messages").status_code == 200
    assert alice.client.get("/dm/conversations").status_code == 200


def test_message_write_off_refuses_a_group_send_and_keeps_group_reads():
    alice, bob = party(), party()
    group = make_group(alice, bob)
    assert distribute(alice, group).status_code == 201
    stored = GroupMessage.objects.count()  # the sender-key distribution
    _writes_off()

    assert_api_error(group_send(alice, group), code="MESSAGE_WRITE_DISABLED", status=503)

    assert GroupMessage.objects.count() == stored
    assert bob.client.get(f"/groups/{group.pk}/messages?since=0").status_code == 200


def test_message_write_back_on_lets_sends_through_again():
    alice, bob = party(), party()
    conversation = open_conversation(alice, bob)
    _writes_off()
    services.flag_clear(name="MESSAGE_WRITE", by=None, reason="fixed")

    assert send(alice, conversation, [bob.device_id]).status_code == 201


def test_feature_flag_message_write_disabled_in_the_environment_is_the_default():
    with override_settings(MESSAGE_WRITE_ENABLED=False):
        alice, bob = party(), party()
        conversation = open_conversation(alice, bob)
        assert_api_error(
            send(alice, conversation, [bob.device_id]), code="MESSAGE_WRITE_DISABLED", status=503
        )


@database_sync_to_async
def _dm_setup():
    alice, bob = party(), party()
    conversation = open_conversation(alice, bob)
    _writes_off()
    return alice, bob, conversation


async def test_message_write_off_answers_a_dm_send_frame_with_the_error_frame():
    alice, bob, conversation = await _dm_setup()
    ws = await ws_connect(alice.token)
    await ws.send_json_to(
        {
            "type": "dm.send",
            "ref": "s1",
            "conversation_id": conversation,
            "client_message_id": "c-1",
            "envelopes": [{"device_id": bob.device_id, "ciphertext": "AAAA", "type": 0}],
        }
    )
    error = await next_frame(ws, "error")
    assert (error["code"], error["ref"]) == ("MESSAGE_WRITE_DISABLED", "s1")
    assert await database_sync_to_async(Message.objects.count)() == 0
    await ws.disconnect()


@database_sync_to_async
def _group_setup():
    alice, bob = party(), party()
    group = make_group(alice, bob)
    assert distribute(alice, group, "k1").status_code == 201
    _writes_off()
    return alice, group, GroupMessage.objects.count()


async def test_message_write_off_answers_a_group_send_frame_with_the_error_frame():
    alice, group, stored = await _group_setup()
    ws = await ws_connect(alice.token)
    await ws.send_json_to(
        {
            "type": "group.send",
            "ref": "g1",
            "group_id": str(group.pk),
            "group_epoch": group.group_epoch,
            "sender_key_id": "k1",
            "client_message_id": "ws-1",
            "ciphertext": "bWVnb2xt",
        }
    )
    error = await next_frame(ws, "error")
    assert (error["code"], error["ref"]) == ("MESSAGE_WRITE_DISABLED", "g1")
    assert await database_sync_to_async(GroupMessage.objects.count)() == stored
    await ws.disconnect()


# --- manage.py feature_flag -------------------------------------------------------------------------


def test_command_set_with_yes_overrides_and_audits_with_the_named_staff_user(capsys):
    staff = UserFactory(username="oncall", is_staff=True)
    call_command(
        "feature_flag", "set", "MESSAGE_WRITE", "off", "--reason", "dupes", "--by", "oncall", "--yes"
    )

    assert flags.is_enabled("message_write") is False
    event = SecurityEvent.objects.get(kind=SecurityEvent.Kind.FEATURE_FLAG_CHANGED)
    assert (event.data["by"], event.data["flag"]) == (staff.pk, "MESSAGE_WRITE")
    assert "MESSAGE_WRITE: on -> off (override)" in capsys.readouterr().out


def test_command_dry_run_prints_the_change_and_changes_nothing(capsys):
    call_command("feature_flag", "set", "GROUPS", "off", "--reason", "x", "--dry-run")

    assert "Would change GROUPS: on (environment) -> off (override)." in capsys.readouterr().out
    assert not FeatureFlag.objects.exists()
    assert not SecurityEvent.objects.exists()


def test_command_clear_and_list_show_the_source(capsys):
    call_command("feature_flag", "set", "STATUS", "off", "--reason", "x", "--yes")
    call_command("feature_flag", "list")
    listed = capsys.readouterr().out
    assert [line.split()[:3] for line in listed.splitlines() if line.startswith("STATUS ")] == [
        ["STATUS", "off", "override"]
    ]

    call_command("feature_flag", "clear", "STATUS", "--reason", "over", "--yes")
    call_command("feature_flag", "list")
    listed = capsys.readouterr().out
    assert [line.split()[:3] for line in listed.splitlines() if line.startswith("STATUS ")] == [
        ["STATUS", "on", "environment"]
    ]


def test_command_refuses_an_unknown_flag():
    with pytest.raises(CommandError, match="Unknown flag"):
        call_command("feature_flag", "set", "NOPE", "off", "--reason", "x", "--yes")


# --- The admin page -------------------------------------------------------------------------------


@pytest.fixture
def staff_client(client):
    staff = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)
    return client, staff


def test_admin_lists_every_flag_with_its_effective_value_and_source(staff_client):
    client, _staff = staff_client
    services.flag_set(name="PRESENCE", enabled=False, by=None, reason="x")

    page = client.get("/admin/api/featureflag/").content.decode()

    for state in selectors.flag_states():
        assert f'data-flag="{state.name}"' in page
    assert "override" in page and "env default" in page


def test_admin_toggle_asks_for_a_reason_then_sets_and_audits(staff_client):
    client, staff = staff_client
    url = "/admin/api/featureflag/toggle/MESSAGE_WRITE/off/"

    confirm = client.get(url)
    assert confirm.status_code == 200 and b'name="reason"' in confirm.content
    no_reason = client.post(url, {"confirm": "yes", "reason": ""})
    assert no_reason.status_code == 200 and not FeatureFlag.objects.exists()

    done = client.post(url, {"confirm": "yes", "reason": "duplicates in group_messages"})

    assert done.status_code == 302
    assert FeatureFlag.objects.get(name="MESSAGE_WRITE").enabled is False
    event = SecurityEvent.objects.get(kind=SecurityEvent.Kind.FEATURE_FLAG_CHANGED)
    assert (event.data["by"], event.data["reason"]) == (staff.pk, "duplicates in group_messages")


# --- The refresher: concurrency, a dead thread, a fork ---------------------------------------------


def test_two_concurrent_first_overrides_each_audit_the_value_they_really_replaced():
    """The second first-override waits for the first (ON CONFLICT on the primary key, then the
    row lock), so its audit's `before` is the first one's `after`, not the environment's value."""
    first_inside, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with transaction.atomic():
                services.flag_set(name="GROUPS", enabled=False, by=None, reason="first")
                first_inside.set()
                release.wait(10)
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)
        finally:
            connection.close()

    def second() -> None:
        try:
            services.flag_set(name="GROUPS", enabled=True, by=None, reason="second")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    with override_settings(GROUPS_ENABLED=True):
        t1 = threading.Thread(target=first)
        t1.start()
        assert first_inside.wait(10)
        t2 = threading.Thread(target=second)
        t2.start()
        time.sleep(0.5)  # the second is now waiting on the first's uncommitted row
        release.set()
        t1.join(10)
        t2.join(10)

    assert errors == []
    audits = SecurityEvent.objects.filter(kind=SecurityEvent.Kind.FEATURE_FLAG_CHANGED).order_by("id")
    assert [(e.data["reason"], e.data["before"], e.data["after"]) for e in audits] == [
        ("first", True, False),
        ("second", False, True),
    ]
    assert FeatureFlag.objects.get(name="GROUPS").enabled is True


def test_a_refresher_that_died_is_started_again_by_the_next_flag_check():
    refresher = flags.Overrides()
    refresher.get("GROUPS")  # starts its thread
    dead = refresher._thread
    # End the thread as an escaped exception would (a stopped thread), then allow starts again.
    refresher._stop.set()
    dead.join(5)
    refresher._stop.clear()
    assert not dead.is_alive()
    FeatureFlag.objects.create(name="GROUPS", enabled=False, reason="while it was dead")
    try:
        refresher.get("GROUPS")  # a flag check
        assert refresher._thread is not dead and refresher._thread.is_alive()
        deadline = time.monotonic() + 5
        while refresher.get("GROUPS") is not False:  # the new thread reads the table
            assert time.monotonic() < deadline, "the new refresher never read the change"
            time.sleep(0.05)
    finally:
        refresher.stop()


class _FirstRefreshRaises(flags.Overrides):
    def __init__(self) -> None:
        super().__init__()
        self.raised = False

    def refresh(self) -> bool:
        if not self.raised:
            self.raised = True
            raise RuntimeError("escaped a refresh")
        return super().refresh()


def test_an_exception_escaping_a_refresh_does_not_end_the_refresher(settings):
    settings.FEATURE_FLAG_REFRESH_S = 0.05
    FeatureFlag.objects.create(name="STATUS", enabled=False, reason="x")
    refresher = _FirstRefreshRaises()
    try:
        refresher.start()
        deadline = time.monotonic() + 5
        while refresher.loaded_at is None:  # set by the first refresh that worked
            assert time.monotonic() < deadline, "the refresher died with the exception"
            time.sleep(0.02)
        assert refresher.raised and refresher._thread.is_alive()
        assert refresher._values == {"STATUS": False}
    finally:
        refresher.stop()


def test_a_fork_while_the_refresher_holds_the_lock_does_not_deadlock_the_child():
    """After a fork only the forking thread exists: a lock another thread held stays held forever
    unless the child gets a fresh one (os.register_at_fork)."""
    with flags.overrides._lock:  # as the refresher holds it while it swaps the values in
        pid = os.fork()
        if pid == 0:  # the child: take the lock (set_local) and say so by the exit code
            try:
                flags.overrides.set_local("GROUPS", False)
                code = 0 if flags.overrides._thread is None else 2
            except BaseException:  # noqa: BLE001
                code = 3
            os._exit(code)
    deadline = time.monotonic() + 5
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the child deadlocked on the lock held at fork time")
        time.sleep(0.02)
    assert os.waitstatus_to_exitcode(status) == 0
