from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "chatsite.realtime"
    label = "realtime"
    verbose_name = "Realtime gateway"

    def ready(self) -> None:
        from django.core import checks

        from chatsite.realtime import receivers  # noqa: F401  (connects accounts' signals)
        from chatsite.realtime.live_connections import check_record_ttl

        checks.register(check_record_ttl)
