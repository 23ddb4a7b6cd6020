"""The realtime fixtures (healthy relay to start from, no leaked connection slots) for the stream
tests here too."""

from tests.realtime.conftest import _fresh_relay_health, _no_leaked_connection_slots  # noqa: F401
