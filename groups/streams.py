"""Every group of the stream's device as a live feed: replay on connect, live frames in order,
and a database read whenever the live path may have dropped something.

Each device-bound stream keeps, per group, the last `seq` it accounted for (`cursor`). On open
it starts from the device's acknowledged position (`group_delivery.acked_seq`), or from where its
user joined (`joined_seq`), and replays what the database holds after it. A live `group.message`
at or before the cursor is a duplicate and dropped; the one right after it is sent; one further
on means something in between has not arrived (another process's publish overtook it, the relay
dropped it, or it is not for this device: its own send over REST, a key distribution made before
the device existed): it is held for GROUP_REORDER_WAIT_MS for the frames in between, and if the
gap is still open the feed reads the database after its cursor, which returns everything
readable in order: group sends commit in `seq` order under the group's row lock, and a live frame
is published only after its commit, so the read sees it and everything before it.

Sends made on this very stream (`group.send`) move the cursor at once (`note_sent`), so a sender
is not made to read the database after each of its own messages.

Concurrency: all state is on the event loop. `GroupFeed.lock` orders a replay page's sends
against live frames and is never held across a database read; a live frame never waits for a
read (it leaves the message to it), so one device's replay cannot delay another sender.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from chatsite.api.errors import ApiError
from chatsite.realtime import registry
from chatsite.realtime.stream import Stream
from groups.selectors.members import participant
from groups.selectors.messages import MessagePage, group_messages_page, stream_positions

FEED = "groups"


@dataclass
class GroupFeed:
    """Per-stream, per-group state (event loop only)."""

    cursor: int
    joined_seq: int
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    missed: bool = False
    replay_task: asyncio.Task | None = None
    # Live frames that overtook an earlier one (publishes from two processes race after their
    # commits), by seq, held for GROUP_REORDER_WAIT_MS before the feed reads the database.
    held: dict[int, dict[str, Any]] = field(default_factory=dict)
    gap_timer: asyncio.Task | None = None

    def replaying(self) -> bool:
        return self.replay_task is not None and not self.replay_task.done()

    def cancel_gap_timer(self) -> None:
        if self.gap_timer is not None and not self.gap_timer.done():
            self.gap_timer.cancel()
        self.gap_timer = None


def _feeds(stream: Stream) -> dict[str, GroupFeed]:
    return stream.state.setdefault(FEED, {})


def _read_page(*, group_id: str, device_id: Any, user_id: int, since: int) -> MessagePage | None:
    """A page after `since`, or None when the user is no longer a member (removed, banned)."""
    member = participant(group_id=group_id, user_id=user_id)
    if member is None or member.is_banned:
        return None
    return group_messages_page(
        group_id=group_id,
        device_id=device_id,
        joined_seq=member.joined_seq,
        since=since,
        limit=settings.GROUP_FETCH_PAGE_SIZE,
    )


_read_page_async = database_sync_to_async(_read_page, thread_sensitive=False)
_positions_async = database_sync_to_async(stream_positions, thread_sensitive=False)


class GroupFeedSource(registry.StreamSource):
    name = FEED
    feature = "groups"

    async def on_open(self, stream: Stream) -> None:
        if stream.device_id is None:
            return
        positions = await _positions_async(user_id=stream.user_id, device_id=stream.device_id)
        # Set up only now, in one step: a live frame that arrives while the positions are read
        # (an in-process hand-over can) is dropped by on_event, and the replays below read it.
        stream.state[FEED] = {
            group_id: GroupFeed(cursor=max(joined_seq, acked_seq or 0), joined_seq=joined_seq)
            for group_id, joined_seq, acked_seq in positions
        }
        for group_id in stream.state[FEED]:
            self.request_replay(stream, group_id)

    async def catch_up(self, stream: Stream) -> None:
        """The relay failed or a heartbeat passed: every group, including any joined meanwhile."""
        if stream.device_id is None or FEED not in stream.state:
            return
        feeds = _feeds(stream)
        for group_id, joined_seq, acked_seq in await _positions_async(
            user_id=stream.user_id, device_id=stream.device_id
        ):
            if group_id not in feeds:
                feeds[group_id] = GroupFeed(cursor=max(joined_seq, acked_seq or 0), joined_seq=joined_seq)
        for group_id in list(feeds):
            self.request_replay(stream, group_id)

    async def on_tick(self, stream: Stream) -> None:
        for group_id, feed in list(stream.state.get(FEED, {}).items()):
            if feed.missed and not feed.replaying():
                self.request_replay(stream, group_id)  # a read that failed goes on

    async def on_event(self, stream: Stream, frame: dict[str, Any]) -> dict[str, Any] | None:
        if frame.get("type") != "group.message" or stream.device_id is None:
            return frame  # group.epoch and the like: as published
        if FEED not in stream.state:
            return None  # still opening: the replays on_open starts read this committed message
        group_id = str(frame["group_id"])
        feed = _feeds(stream).get(group_id)
        if feed is None:
            # A group joined after the stream opened: the read sets it up (and finds this frame).
            self.request_replay(stream, group_id)
            return None
        seq = int(frame["seq"])
        if seq <= feed.cursor:
            return None
        if feed.replaying():
            self.request_replay(stream, group_id)  # the read under way, or one more, has it
            return None
        async with feed.lock:
            if seq <= feed.cursor:
                return None
            if seq > feed.cursor + 1:
                if len(feed.held) >= settings.GROUP_REORDER_MAX_HELD:
                    self.request_replay(stream, group_id)
                    return None
                feed.held[seq] = frame
                if feed.gap_timer is None or feed.gap_timer.done():
                    feed.gap_timer = stream.spawn(self._close_gap(stream, group_id, feed), name="groups gap")
                return None
            await stream.send(frame)
            feed.cursor = seq
            await self._release_held(stream, feed)
        return None

    async def _release_held(self, stream: Stream, feed: GroupFeed) -> None:
        for position in [p for p in feed.held if p <= feed.cursor]:
            del feed.held[position]
        while feed.cursor + 1 in feed.held:
            frame = feed.held.pop(feed.cursor + 1)
            await stream.send(frame)
            feed.cursor = frame["seq"]
        if not feed.held:
            feed.cancel_gap_timer()

    async def _close_gap(self, stream: Stream, group_id: str, feed: GroupFeed) -> None:
        """Still a gap after the wait: the frame in between was lost (or is not for this device,
        e.g. its own REST send): read the database, which has everything."""
        await asyncio.sleep(settings.GROUP_REORDER_WAIT_MS / 1000)
        if feed.held and not stream.closed:
            self.request_replay(stream, group_id)

    def note_synced(self, stream: Stream, group_id: Any, cursor: int) -> None:
        """A `group.sync` sent everything up to `cursor`: the feed need not send it again."""
        feed = stream.state.get(FEED, {}).get(str(group_id))
        if feed is not None and cursor > feed.cursor:
            feed.cursor = cursor

    def note_sent(self, stream: Stream, group_id: Any, seq: int) -> None:
        """This stream's own `group.send` took `seq`: nothing to deliver to it for that position."""
        feed = stream.state.get(FEED, {}).get(str(group_id))
        if feed is not None and seq == feed.cursor + 1 and not feed.replaying():
            feed.cursor = seq

    # --- the database read ---------------------------------------------------------------

    def request_replay(self, stream: Stream, group_id: str) -> None:
        feeds = _feeds(stream)
        feed = feeds.get(group_id)
        if feed is None:
            feed = feeds[group_id] = GroupFeed(cursor=-1, joined_seq=0)  # -1: position not read yet
        feed.missed = True
        if not feed.replaying() and not stream.closed:
            feed.replay_task = stream.spawn(self._replay(stream, group_id, feed), name="groups replay")

    async def _replay(self, stream: Stream, group_id: str, feed: GroupFeed) -> None:
        if feed.cursor < 0:
            positions = {
                g: (joined, acked)
                for g, joined, acked in await _positions_async(
                    user_id=stream.user_id, device_id=stream.device_id
                )
            }
            if group_id not in positions:
                _feeds(stream).pop(group_id, None)
                return
            joined, acked = positions[group_id]
            feed.cursor, feed.joined_seq = max(joined, acked or 0), joined
        while feed.missed and not stream.closed:
            feed.missed = False
            after = feed.cursor
            try:
                page = await _read_page_async(
                    group_id=group_id, device_id=stream.device_id, user_id=stream.user_id, since=after
                )
            except ApiError:
                page = None
            except Exception:
                feed.missed = True  # on_tick reads again
                raise
            if page is None:
                _feeds(stream).pop(group_id, None)  # no longer a member: nothing more to send
                return
            async with feed.lock:
                for item in page.frames:
                    if stream.closed:
                        return
                    if item["seq"] > feed.cursor:
                        await stream.send(item)
                        feed.cursor = item["seq"]
                feed.cursor = max(feed.cursor, page.cursor)
                await self._release_held(stream, feed)
            if page.has_more:
                feed.missed = True


source = GroupFeedSource()


def register() -> None:
    registry.register_source(source)
