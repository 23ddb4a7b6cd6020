"""The one way chatsite's ASGI server is started: `python -m chatsite.server [--bind H] [--port P]`.

The Dockerfile, docker-compose.yml, `make run` (scripts/run.sh), the live-server tests and the
benchmark all run this, so production and tests share one daphne configuration:

- No `--proxy-headers`: daphne would take the first, client-written X-Forwarded-For entry as the
  peer. The scope's client stays the TCP peer and chatsite.api.request picks the client address
  (TRUSTED_PROXIES).
- No daphne access log (verbosity 0): its plain-text lines print URLs as they came, query strings
  included. chatsite.request_logs.AccessLogMiddleware writes the access line through our JSON formatter
  and redaction instead.
- WebSocket messages larger than WS_MAX_MESSAGE_BYTES are refused by the transport before they are
  buffered, with close code 1009 ("message too big") rather than a dropped TCP connection:
  autobahn's failByDrop (default on) would reset the socket and the client would learn nothing.
"""

from __future__ import annotations

import argparse
import os

from daphne.cli import CommandLineInterface
from daphne.server import Server

APPLICATION = "chatsite.asgi:application"


class ChatsiteServer(Server):
    """daphne's Server, with autobahn closing refused connections by the close handshake."""

    @property
    def ws_factory(self):
        return self._ws_factory

    @ws_factory.setter
    def ws_factory(self, factory) -> None:
        # Server.run() creates the factory and then sets its other options (which leave this one
        # alone), before it listens: every connection copies the factory's options when it opens.
        factory.setProtocolOptions(failByDrop=False)
        self._ws_factory = factory


class ChatsiteCommandLine(CommandLineInterface):
    server_class = ChatsiteServer


def daphne_arguments(*, bind: str, port: int) -> list[str]:
    from django.conf import settings

    max_message = str(settings.WS_MAX_MESSAGE_BYTES)
    return [
        "--bind",
        bind,
        "--port",
        str(port),
        "--verbosity",
        "0",
        "--websocket-max-message-size",
        max_message,
        "--websocket-max-frame-size",
        max_message,
        APPLICATION,
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m chatsite.server", description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    ChatsiteCommandLine().run(daphne_arguments(bind=args.bind, port=args.port))


if __name__ == "__main__":
    main()
