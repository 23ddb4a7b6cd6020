"""Docs from code: every frame type a client may send on /ws (the gateway's registry) is listed in
docs/realtime.md's client-to-server table, and every one listed there is registered."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

from chatsite.realtime import registry


def documented_client_frames() -> set[str]:
    text = (Path(settings.BASE_DIR) / "docs" / "realtime.md").read_text()
    table = text.split("Client to server:", 1)[1].split("\n## ", 1)[0]
    frames: set[str] = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            first_cell = line.strip("|").split("|")[0]
            frames.update(re.findall(r"`([a-z_.]+)`", first_cell))
    return frames


def test_every_registered_frame_is_documented_and_every_documented_frame_is_registered():
    registered = set(registry._frames) | {"ping", "pong"}  # ping/pong: the gateway's own

    assert documented_client_frames() == registered
