"""Shared helpers for the realtime tests."""

from __future__ import annotations

from asgiref.testing import ApplicationCommunicator as AsgirefCommunicator
from channels.testing import WebsocketCommunicator


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
