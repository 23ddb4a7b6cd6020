#!/usr/bin/env bash
# Start chatsite with daphne. Without DATABASE_URL / REDIS_URL it runs embedded (SQLite file,
# in-memory channel layer, in-process Celery tasks); the start-up log says which it chose.
set -euo pipefail
cd "$(dirname "$0")/.."
export DJANGO_DEBUG="${DJANGO_DEBUG:-true}"
BIN=.venv/bin
"$BIN/python" manage.py migrate --noinput
"$BIN/python" manage.py collectstatic --noinput >/dev/null
exec "$BIN/daphne" -b "${HOST:-127.0.0.1}" -p "${PORT:-8000}" --proxy-headers chatsite.asgi:application
