#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys
from pathlib import Path


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    configured = {"DJANGO_DEBUG", "DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL"} & os.environ.keys()
    if not configured and not (Path(__file__).resolve().parent / ".env").exists():
        # A bare checkout with nothing configured is a developer's: run commands in development
        # mode (as `make run` does) instead of failing for want of a production secret. A host
        # that names a database or Redis, or has a secret or a .env, is a deployment: it stays
        # strict (so a command there can never act on a new local SQLite file), and so do the
        # servers themselves (daphne, celery), which never take this path.
        sys.stderr.write("chatsite: nothing configured: manage.py runs in development mode (DEBUG, SQLite)\n")
        os.environ["DJANGO_DEBUG"] = "true"
    from django.core.management import execute_from_command_line

    from chatsite.startup import settings_or_exit

    settings_or_exit()
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
