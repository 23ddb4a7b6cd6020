"""Every WebSocket close code the gateway and the domains use, in one place.

docs/realtime.md's "Close codes" table is generated from this enum (`python manage.py
realtime_doc`) and `tests/realtime/test_close_codes.py` fails when the two differ. An SSE stream
ends with the same `closing` event (`code`, `reason`) before its response ends.
"""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    """A close code, with what it means for the client (the generated table's text)."""

    meaning: str

    def __new__(cls, value: int, meaning: str) -> CloseCode:
        member = int.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member

    MESSAGE_TOO_BIG = (
        1009,
        "Sent by the transport (daphne), not the gateway: a message over `WS_MAX_MESSAGE_BYTES`; no"
        " `error` frame comes first.",
    )
    INTERNAL_ERROR = (
        1011,
        "A failure of ours while opening the stream or handling a live event. Reconnect and resume"
        " from your cursor.",
    )
    SLOW_CONSUMER = (
        4008,
        "Events reached the stream more than `WS_SLOW_CONSUMER_LAG_MS` late, or an SSE client left"
        " `SSE_MAX_QUEUED_FRAMES` unread. Reconnect and resume from your cursor.",
    )
    UNAUTHENTICATED = (
        4401,
        "No or bad credentials, or the session ended (log-out, revocation, expiry, a disabled"
        " account, a force-disconnect). Log in again.",
    )
    FORBIDDEN = (
        4403,
        "The stream's device was revoked, or a feature the stream exists for was turned off.",
    )
    PING_TIMEOUT = (
        4408,
        "Neither a frame nor a protocol-level pong received for `WS_PING_INTERVAL_MS +"
        ' WS_PING_TIMEOUT_MS` (see "Staying connected").',
    )
    REPLACED = (4409, "A newer stream of the same device replaced this one (one stream per device).")
    TOO_LARGE = (4413, "A frame over `WS_MAX_FRAME_BYTES`, after an `error` PAYLOAD_TOO_LARGE.")
    RATE_LIMITED = (
        4429,
        "Over a limit: frames or bytes per 10 s (after an `error` RATE_LIMITED), connections per"
        " address, or streams per user (the oldest is closed). Back off before reconnecting.",
    )
    UNAVAILABLE = (4503, "The process holds `MAX_TOTAL_CONNECTIONS`. Reconnect (to another process) later.")
