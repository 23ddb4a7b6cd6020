"""The admin and /schema/docs/ in a real browser: headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium) against a real daphne (tests/live.py), in both shapes we ship:

- production: DJANGO_DEBUG=false, `collectstatic` run first as the Dockerfile does, WhiteNoise
  serving hashed, compressed files from STATIC_ROOT;
- make run: DJANGO_DEBUG=true, WhiteNoise serving the apps' static/ directories, nothing collected.

A stylesheet must be loaded and applied (computed styles, not just a <link>), the Swagger UI must
render the schema's operations, and every resource either page loads must come from the server
itself. Screenshots of each page are left in the test's tmp_path. Without the browser the tests
fail and say what to install (scripts/test.sh installs it when run as root); they never skip.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher, make_password
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.factories import UserFactory
from tests.live import ROOT, LiveServer, live_daphne

pytestmark = [pytest.mark.live_server_process, pytest.mark.django_db(transaction=True)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",  # we run as root, in a container
    "--disable-gpu",
    "--disable-background-networking",  # no update checks or other requests of its own
    "--disable-dev-shm-usage",  # a container's /dev/shm is small
    "--window-size=1280,1000",
)
WAIT_S = 30
PASSWORD = "a staff password for the browser"
TRANSPARENT = "rgba(0, 0, 0, 0)"


@pytest.fixture(scope="module", params=["production", "make-run"])
def shape(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def server(shape, django_db_setup, tmp_path_factory) -> Iterator[LiveServer]:
    if shape == "production":
        static_root = tmp_path_factory.mktemp("staticfiles")
        env = {"DJANGO_DEBUG": "false", "STATIC_ROOT": str(static_root)}
        collect = subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput"],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert collect.returncode == 0, collect.stdout + collect.stderr
    else:
        env = {"DJANGO_DEBUG": "true"}  # and STATIC_ROOT empty (tests/live.py): nothing collected
    with live_daphne(extra_env=env) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not found: this test needs Debian's headless Chromium. Install it "
            "with `apt-get install chromium chromium-driver` (scripts/test.sh does when run as root).",
            pytrace=False,
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in CHROMIUM_ARGS:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        # Both paths given: Selenium Manager is never asked to find (or download) a browser.
        driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    except WebDriverException as exc:
        pytest.fail(f"headless Chromium did not start ({CHROMIUM}, {CHROMEDRIVER}): {exc.msg}", pytrace=False)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser, server) -> webdriver.Chrome:
    """The browser with no cookies and no console messages left from the test before."""
    browser.delete_all_cookies()
    browser.get_log("browser")
    return browser


def staff_user():
    user = UserFactory(is_staff=True, is_superuser=True)
    # The server checks passwords with production's hashers; tests hash with MD5 (tests/conftest.py).
    user.password = make_password(PASSWORD, hasher=PBKDF2PasswordHasher())
    user.save(update_fields=["password"])
    return user


def stylesheets(page) -> dict[str, int]:
    """href -> number of CSS rules the browser parsed from it (same-origin sheets expose them; one
    that failed to load has none)."""
    pairs = page.execute_script(
        """return Array.from(document.styleSheets).filter(s => s.href).map(s => {
            try { return [s.href, s.cssRules.length]; } catch (e) { return [s.href, 0]; }
        });"""
    )
    return dict(pairs)


def style(page, selector: str, prop: str) -> str:
    return page.execute_script(
        "return getComputedStyle(document.querySelector(arguments[0]))[arguments[1]];", selector, prop
    )


def assert_everything_loaded_from(page, server: LiveServer) -> list[str]:
    """Every resource the page loaded came from this server and was found; nothing was logged as an
    error (a failed script or stylesheet shows up here too). /favicon.ico is the browser's own guess,
    which no page here names: the admin has no icon."""
    guess = server.http + "/favicon.ico"
    resources = page.execute_script(
        "return performance.getEntriesByType('resource').map(e => [e.name, e.responseStatus]);"
    )
    resources = [(name, status) for name, status in resources if name != guess]
    foreign = [name for name, _status in resources if not name.startswith(server.http + "/")]
    assert foreign == [], f"loaded from elsewhere: {foreign}"
    failed = [(name, status) for name, status in resources if status != 200]
    assert failed == [], failed
    errors = [
        entry["message"]
        for entry in page.get_log("browser")
        if entry["level"] == "SEVERE" and not entry["message"].startswith(guess + " ")
    ]
    assert errors == [], errors
    return [name for name, _status in resources]


def assert_admin_styled(page, shape: str) -> None:
    sheets = stylesheets(page)
    base = [href for href in sheets if "/static/admin/css/base." in href]
    assert base, f"admin/css/base.css is not among the page's stylesheets: {list(sheets)}"
    assert sheets[base[0]] > 50, "base.css loaded no rules"
    if shape == "production":  # the manifest's hashed name, cached for ever
        assert re.search(r"/static/admin/css/base\.[0-9a-f]{12}\.css$", base[0]), base[0]
    else:
        assert base[0].endswith("/static/admin/css/base.css"), base[0]
    # Applied, not just linked: base.css colours the header; unstyled it would be transparent.
    assert style(page, "#header", "backgroundColor") not in (TRANSPARENT, "")
    assert style(page, "#header", "display") == "flex"


def test_the_admin_is_styled_before_and_after_log_in(page, server, shape, tmp_path):
    user = staff_user()

    page.get(server.http + "/admin/login/")
    assert_admin_styled(page, shape)
    assert_everything_loaded_from(page, server)
    page.save_screenshot(str(tmp_path / f"admin-login-{shape}.png"))

    page.find_element(By.NAME, "username").send_keys(user.username)
    page.find_element(By.NAME, "password").send_keys(PASSWORD + Keys.ENTER)
    WebDriverWait(page, WAIT_S).until(
        expected_conditions.presence_of_element_located((By.ID, "user-tools")),
        f"no admin index (#user-tools) {WAIT_S} s after logging in: {page.current_url}",
    )

    assert page.current_url == server.http + "/admin/"
    assert "Site administration" in page.title
    assert_admin_styled(page, shape)
    assert any("/static/admin/css/dashboard." in href for href in stylesheets(page))
    # The app list's captions are styled blocks (base.css), not plain table captions.
    assert style(page, "#content-main .module caption", "backgroundColor") not in (TRANSPARENT, "")
    assert_everything_loaded_from(page, server)
    page.save_screenshot(str(tmp_path / f"admin-index-{shape}.png"))


def test_schema_docs_render_swagger_ui_from_our_own_files(page, server, shape, tmp_path):
    page.get(server.http + "/schema/docs/")
    WebDriverWait(page, WAIT_S).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "#swagger-ui .opblock")),
        f"Swagger UI rendered no operation in {WAIT_S} s",
    )

    assert "chatsite API" in page.find_element(By.CSS_SELECTOR, "#swagger-ui .info .title").text
    assert len(page.find_elements(By.CSS_SELECTOR, "#swagger-ui .opblock")) > 10
    assert any("/auth/login" in e.text for e in page.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
    # swagger-ui.css applied: operations are tinted boxes, not unstyled divs.
    assert style(page, "#swagger-ui .opblock", "backgroundColor") not in (TRANSPARENT, "")
    assert style(page, "#swagger-ui .opblock", "borderTopStyle") == "solid"
    loaded = assert_everything_loaded_from(page, server)
    sidecar = server.http + "/static/drf_spectacular_sidecar/swagger-ui-dist/"
    for name in ("swagger-ui", "swagger-ui-bundle", "swagger-ui-standalone-preset"):
        assert any(url.startswith(sidecar + name + ".") for url in loaded), (name, loaded)
    page.save_screenshot(str(tmp_path / f"schema-docs-{shape}.png"))


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 (a local http URL)
        return resp.status, dict(resp.headers), resp.read()


def test_static_files_under_daphne_are_cached_as_they_should_be_and_a_missing_one_is_json(server, shape):
    status, body = server.request("GET", "/static/admin/css/no-such-file.css")
    assert (status, body["code"]) == (404, "NOT_FOUND")

    _status, _headers, login_page = _get(server.http + "/admin/login/")
    href = re.search(rb'href="(/static/admin/css/base[^"]*\.css)"', login_page)[1].decode()
    status, headers, _body = _get(server.http + href)

    assert status == 200
    assert headers["Content-Type"].startswith("text/css")
    if shape == "production":
        # A hashed name never changes content: browsers may keep it for ever, and it is sent gzipped.
        assert "immutable" in headers["Cache-Control"], headers
        assert headers["Content-Encoding"] == "gzip"
    else:
        # make run: plain names, revalidated on every load so an edited file shows.
        assert href == "/static/admin/css/base.css"
        assert headers["Cache-Control"] == "max-age=0, public", headers
