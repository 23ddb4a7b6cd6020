from django.apps import AppConfig


class PresenceConfig(AppConfig):
    name = "presence"

    def ready(self) -> None:
        from chatsite.metrics import register_state_collector
        from presence import streams
        from presence.metrics import state_collector

        streams.register()
        register_state_collector(state_collector)
