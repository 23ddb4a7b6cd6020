"""Probes answered ahead of the HTTPS redirect and the host check, on the sync and the async
handler path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse

from chatsite.api.errors import json_error
from chatsite.request_logs import REQUEST_ID_HEADER, GetResponse, SyncAndAsyncMiddleware, bind_request_id


class ProbeMiddleware(SyncAndAsyncMiddleware):
    """Answer the ops probe paths before every other middleware, first in MIDDLEWARE.

    Load balancers and docker healthchecks probe over plain HTTP with an internal address as Host;
    SecurityMiddleware would redirect them to HTTPS and CommonMiddleware would reject the Host
    (DisallowedHost), so both are skipped here. Nothing on this path calls request.get_host().
    """

    def __init__(self, get_response: GetResponse) -> None:
        super().__init__(get_response)
        from ops.urls import urlpatterns  # the routes are the one list of probe paths

        self.probes = {f"/{pattern.pattern}": pattern.callback for pattern in urlpatterns}

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        view = self.probes.get(request.path_info)
        if self.async_mode:
            return self._acall(request, view)
        if view is None:
            return self.get_response(request)
        request_id = bind_request_id(request)
        response = _method_not_allowed(request) or view(request)
        response[REQUEST_ID_HEADER] = request_id
        return response

    async def _acall(self, request: HttpRequest, view: Callable | None) -> HttpResponse:
        if view is None:
            return await self.get_response(request)
        request_id = bind_request_id(request)
        response = _method_not_allowed(request)
        if response is None:
            response = await sync_to_async(view)(request)  # the checks block on worker threads
        response[REQUEST_ID_HEADER] = request_id
        return response


PROBE_METHODS = ("GET", "HEAD")


def _method_not_allowed(request: HttpRequest) -> HttpResponse | None:
    """Probes are read-only; any other method gets the JSON envelope (the views' own
    require_safe would answer with an empty text/html 405)."""
    if request.method in PROBE_METHODS:
        return None
    response = json_error("METHOD_NOT_ALLOWED", f"{request.method} is not allowed here; use GET.")
    response["Allow"] = ", ".join(PROBE_METHODS)
    return response
