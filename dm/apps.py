from django.apps import AppConfig


class DmConfig(AppConfig):
    name = "dm"
    verbose_name = "E2EE direct messages"

    def ready(self) -> None:
        from chatsite.metrics import register_state_collector
        from dm import frames, streams
        from dm.metrics import state_collector

        streams.register()
        frames.register()
        register_state_collector(state_collector)
