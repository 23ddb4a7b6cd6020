"""Start-up of the command-line entry points (manage.py, the server launcher): a configuration
error is one clear line on stderr and exit status 1, not a traceback."""

from __future__ import annotations

import sys

from django.core.exceptions import ImproperlyConfigured


def settings_or_exit() -> None:
    """Load the settings now; on a configuration error print it as one line and exit 1."""
    from django.conf import settings

    try:
        settings.SECRET_KEY  # noqa: B018 - touching a setting loads (and checks) them all
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"chatsite: configuration error: {exc}\n")
        raise SystemExit(1) from None
