"""API clients get the JSON error envelope for a crash even with DJANGO_DEBUG=true (Django's debug
500 page is HTML with a stack trace). The admin keeps Django's pages."""

from __future__ import annotations

import logging

from django.utils.deprecation import MiddlewareMixin

from chatsite.api.errors import json_error

logger = logging.getLogger("chatsite.api")


class JsonExceptionMiddleware(MiddlewareMixin):
    """MiddlewareMixin: works for sync and async views alike (no thread hop for async ones)."""

    def process_exception(self, request, exception):
        if request.path.startswith("/admin/"):
            return None
        logger.exception("unhandled error", exc_info=exception)
        return json_error("INTERNAL_ERROR")
