"""chatsite/realtime/middleware.py: the /ws scope's client address (TRUSTED_PROXIES) and what it
authenticates from."""

from __future__ import annotations

import pytest

from chatsite.realtime.middleware import TokenAuthMiddleware


async def _scope_seen_by_the_app(
    *, peer: str, headers: list[tuple[bytes, bytes]], query: bytes = b""
) -> dict:
    seen: dict = {}

    async def app(scope, receive, send):
        seen.update(scope)

    scope = {
        "type": "websocket",
        "path": "/ws",
        "query_string": query,
        "headers": headers,
        "client": (peer, 5000),
    }
    await TokenAuthMiddleware(app)(scope, None, None)
    return seen


async def test_ws_direct_client_forging_x_forwarded_for_gets_its_peer_address(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]

    scope = await _scope_seen_by_the_app(peer="198.51.100.7", headers=[(b"x-forwarded-for", b"1.2.3.4")])

    assert scope["client_ip"] == "198.51.100.7"


async def test_ws_behind_a_trusted_proxy_gets_the_rightmost_untrusted_hop(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    headers = [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.9"), (b"x-forwarded-for", b"10.0.0.9")]

    scope = await _scope_seen_by_the_app(peer="10.0.0.5", headers=headers)

    assert scope["client_ip"] == "203.0.113.9"


@pytest.mark.django_db
async def test_ws_ticket_is_not_passed_on_as_a_stream_parameter():
    scope = await _scope_seen_by_the_app(peer="127.0.0.1", headers=[], query=b"ticket=unknown&cursor=3")

    assert scope["auth_session"] is None
    assert scope["query_params"] == {"cursor": "3"}
