"""The status stream source: `status.posted` and `status.rekey` reach the user's live streams
(published to the user's channel-layer group with source "status"); off when STATUS_ENABLED is."""

from __future__ import annotations

from chatsite.realtime import registry


class StatusSource(registry.StreamSource):
    name = "status"
    feature = "status"


def register() -> None:
    registry.register_source(StatusSource())
