"""How domains plug into the gateway (registered from each app's AppConfig.ready()).

- A *frame handler* answers one client frame type on /ws (e.g. "dm.send").
- A *stream source* adds a domain's live feed to every stream: the channel-layer groups it
  listens to, what to replay on open, how to catch up from the database when the relay failed,
  and an optional filter for its published events (e.g. drop what a cursor already covers).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chatsite.realtime.stream import Stream

FrameHandler = Callable[["Stream", dict[str, Any]], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True)
class FrameSpec:
    handler: FrameHandler
    feature: str | None = None


class StreamSource:
    """Base class for a domain's live feed; override what applies."""

    name: str = ""
    feature: str | None = None  # a chatsite.api.flags name; when off, the source is inactive

    def groups(self, stream: Stream) -> list[str]:
        return []

    async def on_open(self, stream: Stream) -> None:
        """Set up this stream's state and start replaying what the client missed (from its
        cursor) in `stream.spawn(...)`: never send from here, and never wait for a replay, or
        the client's frames (its acknowledgements) are not read until it ends."""

    async def catch_up(self, stream: Stream) -> None:
        """Read from the database what the live path may have dropped (relay down or back);
        like on_open, start the read with `stream.spawn`, do not wait for it."""

    async def on_tick(self, stream: Stream) -> None:
        """Periodic bookkeeping (about once a second), e.g. flushing batched writes."""

    async def on_event(self, stream: Stream, frame: dict[str, Any]) -> dict[str, Any] | None:
        """Filter or reshape a published frame for this stream; None drops it."""
        return frame


_frames: dict[str, FrameSpec] = {}
_sources: dict[str, StreamSource] = {}


def register_frame(frame_type: str, handler: FrameHandler, *, feature: str | None = None) -> None:
    if frame_type in _frames or frame_type in ("ping", "pong"):
        raise ValueError(f"frame type {frame_type!r} is already registered")
    _frames[frame_type] = FrameSpec(handler, feature)


def register_source(source: StreamSource) -> None:
    _sources[source.name] = source


def frame_spec(frame_type: str) -> FrameSpec | None:
    return _frames.get(frame_type)


def sources() -> list[StreamSource]:
    return list(_sources.values())


def source(name: str | None) -> StreamSource | None:
    return _sources.get(name) if name else None
