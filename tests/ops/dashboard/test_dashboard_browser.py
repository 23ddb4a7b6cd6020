"""The dashboard in a real browser (headless Chromium against a real daphne: the set-up of
tests/ops/test_admin_static_browser.py): staff log in, follow the admin index's link to the
dashboard, see the integrity section with a failing check, and follow its link to the offending
rows. (Running the remediation from there is tests/ops/remediations/test_browser.py.)"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from groups.models import Participant
from ops.models import IntegrityResult
from tests import live
from tests.factories import GroupFactory
from tests.ops.test_admin_static_browser import (  # noqa: F401 (browser is a fixture)
    PASSWORD,
    WAIT_S,
    assert_everything_loaded_from,
    browser,
    staff_user,
)

pytestmark = [pytest.mark.live_server_process, pytest.mark.django_db(transaction=True)]

PORTS = range(9600, 9700)  # this suite's own range, so parallel suites never collide


def port_in_range() -> int:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS}")


@pytest.fixture(scope="module")
def server(django_db_setup) -> Iterator[live.LiveServer]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(live, "free_port", port_in_range)
        # make run's shape: static files from the apps, nothing to collect.
        with live.live_daphne(extra_env={"DJANGO_DEBUG": "true"}) as running:
            yield running


def test_staff_open_the_dashboard_and_follow_a_failing_check_to_its_rows(browser, server, tmp_path):  # noqa: F811
    operator = staff_user()
    orphaned, healthy = GroupFactory(title="orphaned group"), GroupFactory(title="healthy group")
    Participant.objects.filter(group=orphaned, role=Participant.Role.OWNER).delete()
    IntegrityResult.objects.create(check_name="groups_without_owner", severity="critical", violations=1)
    browser.delete_all_cookies()
    wait = WebDriverWait(browser, WAIT_S)

    browser.get(server.http + "/admin/login/")
    browser.find_element(By.NAME, "username").send_keys(operator.username)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD + Keys.ENTER)
    wait.until(expected_conditions.presence_of_element_located((By.ID, "ops-dashboard-link")))
    browser.find_element(By.LINK_TEXT, "Operations dashboard").click()
    wait.until(expected_conditions.presence_of_element_located((By.ID, "ops-integrity")))

    assert browser.current_url == server.http + "/admin/ops/dashboard/"
    integrity = browser.find_element(By.ID, "ops-integrity")
    assert integrity.is_displayed()
    check = integrity.find_element(By.CSS_SELECTOR, 'tr[data-check="groups_without_owner"]')
    assert "critical" in check.text and "python manage.py promote_group_owner GROUP_ID" in check.text
    for section in ("ops-health", "ops-flags", "ops-connections", "ops-security"):
        assert browser.find_element(By.ID, section).is_displayed()
    assert_everything_loaded_from(browser, server)
    browser.save_screenshot(str(tmp_path / "ops-dashboard.png"))

    check.find_element(By.LINK_TEXT, "view rows").click()
    wait.until(expected_conditions.presence_of_element_located((By.ID, "result_list")))

    listed = browser.find_element(By.ID, "result_list").text
    assert str(orphaned.pk) in listed and str(healthy.pk) not in listed
    assert "has_owner=no" in browser.current_url
