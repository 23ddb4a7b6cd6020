"""Shared helpers for the realtime tests."""

from __future__ import annotations

import asyncio
import contextlib
import weakref

from asgiref.testing import ApplicationCommunicator as AsgirefCommunicator
from channels.testing import WebsocketCommunicator

# Every communicator a test creates; the `_disconnect_communicators` fixture (tests/conftest.py)
# disconnects those still running when the test ends, passed or failed, so one failed assertion
# cannot leave a socket (and its connection slots) behind for the next test.
created: weakref.WeakSet[AsgirefCommunicator] = weakref.WeakSet()


async def disconnect_leftovers() -> None:
    for comm in list(created):
        future = getattr(comm, "future", None)
        if future is None or future.done():
            continue
        with contextlib.suppress(Exception, asyncio.CancelledError):
            if isinstance(comm, WebsocketCommunicator):
                await comm.disconnect(timeout=2)
            else:
                await comm.wait(timeout=2)
    created.clear()


class Communicator(WebsocketCommunicator):
    """channels' WebsocketCommunicator, minus its patch that turns close_old_connections into a
    no-op while the test waits for the app.

    That patch protects TestCase's shared connection; these tests are transactional and the
    consumer's ORM runs in worker threads, which must return their pooled connections as they do
    in production. Otherwise a worker thread can end holding one, and pytest cannot drop the
    test database ("being accessed by other users").
    """

    send_input = AsgirefCommunicator.send_input
    receive_output = AsgirefCommunicator.receive_output

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        created.add(self)
