"""One remediation end to end in a real browser (headless Chromium against a real daphne, the set-up
of tests/ops/test_admin_static_browser.py): staff log in to the admin, pick an orphaned group,
run "Promote an owner", give a reason on the confirmation page, and the database has the new
owner and the audit row."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from chatsite.accounts.models import SecurityEvent
from groups.models import Participant
from tests.factories import GroupFactory, UserFactory, group_add_members
from tests.live import LiveServer, live_daphne
from tests.ops.test_admin_static_browser import PASSWORD, WAIT_S, browser, staff_user  # noqa: F401 (fixture)

pytestmark = [pytest.mark.live_server_process, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def server(django_db_setup) -> Iterator[LiveServer]:
    # make run's shape (static files from the apps, nothing to collect): this test is about the action.
    with live_daphne(extra_env={"DJANGO_DEBUG": "true"}) as running:
        yield running


def test_staff_promote_an_owner_through_the_confirmation_page(browser, server, tmp_path):  # noqa: F811
    operator = staff_user()
    group = GroupFactory(title="orphaned in the browser")
    heir = UserFactory()
    group_add_members(group, heir, role="admin")
    Participant.objects.filter(group=group, role="owner").delete()
    browser.delete_all_cookies()
    wait = WebDriverWait(browser, WAIT_S)

    browser.get(server.http + "/admin/login/")
    browser.find_element(By.NAME, "username").send_keys(operator.username)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD + Keys.ENTER)
    wait.until(expected_conditions.presence_of_element_located((By.ID, "user-tools")))
    browser.get(f"{server.http}/admin/groups/group/?q={group.pk}")
    browser.find_element(By.CSS_SELECTOR, f'input[name="_selected_action"][value="{group.pk}"]').click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("promote_owner")
    browser.find_element(By.NAME, "index").click()

    wait.until(expected_conditions.presence_of_element_located((By.ID, "id_reason")))
    assert f"{heir.username} (admin) becomes the owner" in browser.page_source
    assert not Participant.objects.filter(group=group, role="owner").exists()  # not before "yes"
    browser.save_screenshot(str(tmp_path / "promote-owner-confirmation.png"))
    browser.find_element(By.ID, "id_reason").send_keys("found by the integrity check")
    browser.find_element(By.CSS_SELECTOR, 'input[type="submit"][value="Yes, I\'m sure"]').click()

    wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "ul.messagelist")))
    assert "Promoted 1 owner(s)." in browser.find_element(By.CSS_SELECTOR, "ul.messagelist").text
    assert Participant.objects.get(group=group, user=heir).role == "owner"
    event = SecurityEvent.objects.get(kind=SecurityEvent.Kind.REMEDIATION_APPLIED)
    assert (event.data["by"], event.data["reason"]) == (operator.pk, "found by the integrity check")
