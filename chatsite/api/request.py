"""Small request helpers shared by views and the gateway."""

from __future__ import annotations

import functools
import ipaddress

from django.conf import settings
from django.http import HttpRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.cache
def _networks(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    # Cached by value, so a test's settings override takes effect without a reload.
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip())


def _parse(value: str) -> IPAddress | None:
    """An address from a peer or an X-Forwarded-For entry ("1.2.3.4", "1.2.3.4:80", "[::1]:80")."""
    value = value.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    # ::ffff:10.0.0.1 is how a dual-stack socket reports an IPv4 peer; compare it as IPv4.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress) -> bool:
    return any(address in network for network in _networks(tuple(settings.TRUSTED_PROXIES)))


def client_ip_from(forwarded_for: str, remote_addr: str | None) -> str | None:
    """The client address. X-Forwarded-For counts only when the peer itself is a trusted proxy
    (TRUSTED_PROXIES), and then the client is the right-most hop that is not a trusted proxy:
    each proxy appends the address it received from, so only entries right of the first
    untrusted one were written by proxies we trust; anything further left is the client's own
    say and can be forged."""
    peer = _parse(remote_addr or "")
    if peer is None:
        return remote_addr or None
    if not forwarded_for or not _trusted(peer):
        return str(peer)
    nearest = peer
    for entry in reversed(forwarded_for.split(",")):
        hop = _parse(entry)
        if hop is None:
            # A malformed hop: what is left of it cannot be attributed; the last trusted proxy
            # that handed it on is the best address we know.
            return str(nearest)
        if not _trusted(hop):
            return str(hop)
        nearest = hop
    return str(nearest)  # every hop is one of our proxies: the request started inside


def client_ip(request: HttpRequest) -> str | None:
    return client_ip_from(request.META.get("HTTP_X_FORWARDED_FOR", ""), request.META.get("REMOTE_ADDR"))


def validated_body(serializer_class, data) -> dict:
    """A request body checked by a (shape-only) serializer: its validated data, or the
    VALIDATION_ERROR envelope through DRF's exception handler."""
    body = serializer_class(data=data)
    body.is_valid(raise_exception=True)
    return body.validated_data
