from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "chatsite.accounts"
    label = "accounts"
    verbose_name = "Accounts and sessions"

    def ready(self) -> None:
        from chatsite.accounts import schema  # noqa: F401  (registers the OpenAPI auth scheme)
