#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys
from pathlib import Path


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    configured = {"DJANGO_DEBUG", "DJANGO_SECRET_KEY"} & os.environ.keys()
    if not configured and not (Path(__file__).resolve().parent / ".env").exists():
        # A bare checkout with nothing configured is a developer's: run commands in development
        # mode (as `make run` does) instead of failing for want of a production secret. Any
        # deployment sets DJANGO_SECRET_KEY (env or .env), so this never applies there, and the
        # servers themselves (daphne, celery) never take this path: they stay strict.
        os.environ["DJANGO_DEBUG"] = "true"
    from django.core.management import execute_from_command_line

    from chatsite.startup import settings_or_exit

    settings_or_exit()
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
