from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "chatsite.api"
    label = "api"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from chatsite.api import circuit

        # Every statement that completes tells the database breaker the database answers
        # (chatsite/api/circuit.py).
        connection_created.connect(circuit.on_connection_created, dispatch_uid="chatsite.api.circuit")
