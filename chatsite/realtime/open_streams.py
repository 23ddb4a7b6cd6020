"""The in-process index of open streams: by channel name, by device and by user.

A replacement in the same process then does not depend on the relay, and an event for a device
whose stream lives here is handed to it directly instead of a round trip through Redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatsite.realtime.stream import Stream

_by_channel: dict[str, Stream] = {}
_by_device: dict[str, Stream] = {}
_by_user: dict[int, set[Stream]] = {}


def add(stream: Stream) -> None:
    _by_channel[stream.channel_name] = stream
    if stream.device_id is not None:
        _by_device[str(stream.device_id)] = stream
    _by_user.setdefault(stream.user_id, set()).add(stream)


def remove(stream: Stream) -> None:
    _by_channel.pop(stream.channel_name, None)
    if stream.device_id is not None and _by_device.get(str(stream.device_id)) is stream:
        del _by_device[str(stream.device_id)]
    streams = _by_user.get(stream.user_id)
    if streams is not None:
        streams.discard(stream)
        if not streams:
            del _by_user[stream.user_id]


def by_channel(channel: str) -> Stream | None:
    return _by_channel.get(channel)


def by_device(device_id) -> Stream | None:
    stream = _by_device.get(str(device_id))
    return stream if stream is not None and not stream.closed else None


def by_user(user_id: int) -> list[Stream]:
    return list(_by_user.get(user_id, ()))
