from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "chatsite.realtime"
    label = "realtime"
    verbose_name = "Realtime gateway"

    def ready(self) -> None:
        from chatsite.realtime import receivers  # noqa: F401  (connects accounts' signals)
