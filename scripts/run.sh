#!/usr/bin/env bash
# Start chatsite with daphne (configured in chatsite/server.py). Without DATABASE_URL / REDIS_URL it runs embedded (SQLite file,
# in-memory channel layer, in-process Celery tasks); the start-up log says which it chose.
set -euo pipefail
cd "$(dirname "$0")/.."
export DJANGO_DEBUG="${DJANGO_DEBUG:-true}"
BIN=.venv/bin
"$BIN/python" manage.py migrate --noinput
"$BIN/python" manage.py collectstatic --noinput >/dev/null
exec "$BIN/python" -m chatsite.server --bind "${HOST:-127.0.0.1}" --port "${PORT:-8000}"
