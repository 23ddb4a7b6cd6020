"""Even with DEBUG on (`make run`), API clients never get an HTML error page."""

from django.http import HttpResponse
from django.test import override_settings
from django.urls import path

import chatsite.urls


def boom(request):
    raise RuntimeError("kaboom")


def fine(request):
    return HttpResponse("ok")


urlpatterns = [path("boom", boom), *chatsite.urls.urlpatterns]


@override_settings(DEBUG=True)
def test_unknown_route_is_json_404_with_debug_on(client):
    resp = client.get("/no/such/route")
    assert resp.status_code == 404
    assert resp["Content-Type"] == "application/json"
    assert resp.json()["code"] == "NOT_FOUND"


@override_settings(DEBUG=True, ROOT_URLCONF=__name__)
def test_crash_in_a_plain_view_is_json_500_with_debug_on(client):
    client.raise_request_exception = False
    resp = client.get("/boom")
    assert resp.status_code == 500
    assert resp["Content-Type"] == "application/json"
    assert resp.json() == {"code": "INTERNAL_ERROR", "detail": "Internal server error."}
    assert b"kaboom" not in resp.content and b"Traceback" not in resp.content
