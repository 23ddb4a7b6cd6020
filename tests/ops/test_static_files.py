"""Static files: WhiteNoise serves them, a missing one is the JSON 404, and /schema/docs/ loads
Swagger UI from our own static files (drf-spectacular-sidecar), never from a CDN.

In-process, through Django's test client; tests/ops/test_admin_static_browser.py checks the same
against a real daphne in a real browser.
"""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import environ
import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from tests.conftest import assert_api_error

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=[False, True], ids=["production", "debug"])
def debug(request, settings) -> bool:
    """Both modes; the middleware reads its settings when a new Client first handles a request."""
    settings.DEBUG = request.param
    settings.WHITENOISE_USE_FINDERS = request.param
    settings.WHITENOISE_AUTOREFRESH = request.param
    return request.param


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/static/admin/css/no-such-file.css"),
        ("get", "/static/admin/css/"),
        ("get", "/static/"),
        ("head", "/static/no-such-file.js"),
        ("post", "/static/no-such-file.js"),
    ],
)
def test_a_missing_static_file_is_a_json_404_never_an_html_page(debug, method, path):
    resp = getattr(Client(), method)(path)

    if method == "head":  # no body to parse: the status and the content type say it
        assert resp.status_code == 404
        assert resp["Content-Type"].startswith("application/json")
    else:
        assert_api_error(resp, code="NOT_FOUND", status=404)


def test_debug_serves_the_apps_static_files_without_collectstatic(settings):
    settings.DEBUG = settings.WHITENOISE_USE_FINDERS = settings.WHITENOISE_AUTOREFRESH = True

    resp = Client().get("/static/admin/css/base.css")

    assert resp.status_code == 200
    assert resp["Content-Type"].startswith("text/css")
    assert b"DJANGO Admin styles" in b"".join(resp.streaming_content)


def test_schema_docs_load_swagger_ui_only_from_our_own_static_files():
    html = Client().get("/schema/docs/").content.decode()

    references = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert len(references) >= 4, references  # favicon, stylesheet, bundle, preset
    # Nothing absolute or protocol-relative: every reference is on this server.
    assert "://" not in html
    assert not [url for url in references if not url.startswith("/") or url.startswith("//")]
    for name in (
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "favicon-32x32.png",
    ):
        url = "/static/drf_spectacular_sidecar/swagger-ui-dist/" + name
        assert url in references, (url, references)
        assert finders.find(url.removeprefix("/static/")), f"{url} is not shipped with the app"


@pytest.fixture
def settings_for(monkeypatch):
    """settings.py evaluated with DJANGO_DEBUG as given (and no developer .env)."""

    def evaluate(*, debug: bool) -> dict[str, object]:
        monkeypatch.setenv("DJANGO_DEBUG", str(debug).lower())
        monkeypatch.setenv("DJANGO_SECRET_KEY", "test-only-secret-key-for-evaluating-settings")
        monkeypatch.setattr(environ.Env, "read_env", classmethod(lambda cls, *args, **kwargs: None))
        return runpy.run_path(str(ROOT / "chatsite" / "settings.py"))

    return evaluate


def test_production_serves_hashed_compressed_files_collected_at_build_time(settings_for):
    production = settings_for(debug=False)

    backend = production["STORAGES"]["staticfiles"]["BACKEND"]
    assert backend == "whitenoise.storage.CompressedManifestStaticFilesStorage"
    assert (production["WHITENOISE_USE_FINDERS"], production["WHITENOISE_AUTOREFRESH"]) == (False, False)
    middleware = production["MIDDLEWARE"]
    assert middleware.index("whitenoise.middleware.WhiteNoiseMiddleware") == (
        middleware.index("django.middleware.security.SecurityMiddleware") + 1
    )
    assert middleware[0] == "ops.middleware.ProbeMiddleware"
    assert "drf_spectacular_sidecar" in production["INSTALLED_APPS"]
    # The image collects at build time: after the code is copied, before it drops root.
    dockerfile = (ROOT / "Dockerfile").read_text()
    collect = dockerfile.index("manage.py collectstatic --noinput")
    assert dockerfile.index("COPY . .") < collect < dockerfile.index("USER app")


def test_make_run_serves_from_the_apps_without_collectstatic(settings_for):
    development = settings_for(debug=True)

    assert development["STORAGES"]["staticfiles"]["BACKEND"].endswith(".StaticFilesStorage")
    assert (development["WHITENOISE_USE_FINDERS"], development["WHITENOISE_AUTOREFRESH"]) == (True, True)
