"""Request ids, and probes answered ahead of the HTTPS redirect and the host check.

Both classes work on the sync and the async handler path: under daphne the chain is async, and a
sync-only middleware would cost every request a thread hop.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.core.signals import request_finished
from django.http import HttpRequest, HttpResponse

from ops.logging import request_id_var

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is reused only if it is short and plain: it goes into every log line and header.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")

GetResponse = Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]


def _bind_request_id(request: HttpRequest) -> str:
    incoming = request.META.get("HTTP_X_REQUEST_ID", "")
    request_id = incoming if _SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
    request.request_id = request_id
    # Not reset when the middleware returns: Django logs 4xx/5xx responses ("Not Found: /x") after
    # the chain, and those lines need the id most. Async requests run in their own task (their own
    # context); on the sync path request_finished clears it once the response is closed.
    request_id_var.set(request_id)
    return request_id


def _clear_request_id(**kwargs: Any) -> None:
    request_id_var.set(None)


request_finished.connect(_clear_request_id, dispatch_uid="ops.middleware.clear_request_id")


class _SyncAndAsync:
    """Django's pattern for a middleware with both a sync and an async path."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)


class RequestIdMiddleware(_SyncAndAsync):
    """Give every request an id: in request.request_id, every log line, and the response header."""

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.async_mode:
            return self._acall(request)
        request_id = _bind_request_id(request)
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        request_id = _bind_request_id(request)
        response = await self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response


class ProbeMiddleware(_SyncAndAsync):
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
        request_id = _bind_request_id(request)
        response = view(request)
        response[REQUEST_ID_HEADER] = request_id
        return response

    async def _acall(self, request: HttpRequest, view: Callable | None) -> HttpResponse:
        if view is None:
            return await self.get_response(request)
        request_id = _bind_request_id(request)
        response = await sync_to_async(view)(request)  # the checks block on worker threads
        response[REQUEST_ID_HEADER] = request_id
        return response
