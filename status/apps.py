from django.apps import AppConfig


class StatusConfig(AppConfig):
    name = "status"

    def ready(self) -> None:
        from chatsite.metrics import register_state_collector
        from status import streams
        from status.metrics import state_collector

        streams.register()
        register_state_collector(state_collector)
