"""A real daphne process on a free port, talking to the pytest test database and Redis."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, port: int, proc: subprocess.Popen, log):
        self.port = port
        self.proc = proc
        self.log = log
        self.http = f"http://127.0.0.1:{port}"
        self.ws = f"ws://127.0.0.1:{port}"

    def output(self) -> str:
        """Everything the process wrote to stdout and stderr so far. pread: the process shares the
        file offset, so seeking here would make it write over what it wrote before."""
        fd = self.log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")

    def request(
        self, method: str, path: str, body=None, token: str | None = None, headers: dict | None = None
    ) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.http + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else {}
        except urllib.error.HTTPError as err:
            raw = err.read()
            return err.code, json.loads(raw) if raw else {}


def daphne_database_url() -> str:
    """DATABASE_URL with the database name swapped for pytest's test database."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


@contextlib.contextmanager
def live_daphne(extra_env: dict[str, str] | None = None, startup_timeout: float = 20):
    """Start daphne on the test database (callers need a transactional db) and stop it after."""
    port = free_port()
    static_root = tempfile.TemporaryDirectory(prefix="chatsite-static-")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "chatsite.settings",
        "DATABASE_URL": daphne_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_DEBUG": "false",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",  # plain HTTP, as behind the TLS-terminating balancer
        "DB_POOL_MIN_SIZE": "1",
        "DB_POOL_MAX_SIZE": "4",
        # An existing, empty STATIC_ROOT: these servers serve no static files (the browser test
        # collects its own), and WhiteNoise would print a plain-text warning for a missing one.
        "STATIC_ROOT": static_root.name,
        **(extra_env or {}),
    }
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        # The launcher production uses (Dockerfile, docker-compose.yml).
        [sys.executable, "-m", "chatsite.server", "--bind", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = LiveServer(port, proc, log)

    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            try:
                urllib.request.urlopen(server.http + "/live", timeout=1).close()  # noqa: S310 (local URL)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"daphne did not start:\n{server.output()[-3000:]}") from None
                time.sleep(0.1)
        yield server
    finally:
        # Always stopped, and before the test database is dropped.
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
        static_root.cleanup()
