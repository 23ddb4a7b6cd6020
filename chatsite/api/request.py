"""Small request helpers shared by views and the gateway."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_ip_from(forwarded_for: str, remote_addr: str | None) -> str | None:
    """The client address: the first X-Forwarded-For hop only behind a trusted proxy."""
    if settings.TRUST_X_FORWARDED_FOR and forwarded_for:
        return forwarded_for.split(",")[0].strip() or remote_addr
    return remote_addr or None


def client_ip(request: HttpRequest) -> str | None:
    return client_ip_from(request.META.get("HTTP_X_FORWARDED_FOR", ""), request.META.get("REMOTE_ADDR"))
