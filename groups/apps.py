from django.apps import AppConfig


class GroupsConfig(AppConfig):
    name = "groups"

    def ready(self) -> None:
        from chatsite.metrics import register_state_collector
        from groups import (
            frames,
            receivers,  # noqa: F401  (connects dm's and accounts' signals)
            room_frames,
            streams,
        )
        from groups.metrics import state_collector

        frames.register()
        room_frames.register()
        streams.register()
        register_state_collector(state_collector)
