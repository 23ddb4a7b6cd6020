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
- Protocol-level keepalive: daphne pings an idle WebSocket every WS_PING_INTERVAL_MS and drops it
  after WS_PING_TIMEOUT_MS without a pong; every pong, and every ping a client sends, is passed to
  the application as a `websocket.keepalive` message, so a client that only listens (its library
  answers pings, as nearly all do) is alive for the gateway too (docs/realtime.md, "Staying
  connected").
- It says where it listens, in one JSON line, before it starts.
"""

from __future__ import annotations

import argparse
import logging
import os

from daphne.cli import CommandLineInterface
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol

APPLICATION = "chatsite.asgi:application"


class KeepaliveProtocol(WebSocketProtocol):
    """daphne's WebSocket protocol, telling the application about protocol-level liveness."""

    def _keepalive(self) -> None:
        queue = getattr(self, "application_queue", None)
        if queue is not None and self.state == self.STATE_OPEN:
            queue.put_nowait({"type": "websocket.keepalive"})

    def onPing(self, payload: bytes) -> None:
        super().onPing(payload)  # answers it with a pong
        self._keepalive()

    def onPong(self, payload: bytes) -> None:
        super().onPong(payload)
        self._keepalive()


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
        factory.protocol = KeepaliveProtocol
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
        # daphne takes whole seconds.
        "--ping-interval",
        str(max(1, settings.WS_PING_INTERVAL_MS // 1000)),
        "--ping-timeout",
        str(max(1, settings.WS_PING_TIMEOUT_MS // 1000)),
        APPLICATION,
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m chatsite.server", description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    import django

    from chatsite.startup import settings_or_exit

    settings_or_exit()
    django.setup()  # our logging, for the line below
    host = f"[{args.bind}]" if ":" in args.bind else args.bind
    logging.getLogger("chatsite.server").info(
        f"listening on http://{host}:{args.port} (WebSocket ws://{host}:{args.port}/ws)",
        extra={"bind": args.bind, "port": args.port},
    )
    ChatsiteCommandLine().run(daphne_arguments(bind=args.bind, port=args.port))


if __name__ == "__main__":
    main()
