#!/usr/bin/env bash
# Start chatsite with daphne (configured in chatsite/server.py). Without DATABASE_URL / REDIS_URL it runs embedded (SQLite file,
# in-memory channel layer, in-process Celery tasks); the start-up log says which it chose.
set -euo pipefail
cd "$(dirname "$0")/.."
export DJANGO_DEBUG="${DJANGO_DEBUG:-true}"
BIN=.venv/bin
"$BIN/python" manage.py migrate --noinput
# With DJANGO_DEBUG (the default here) WhiteNoise serves the apps' static files where they are,
# looked up on each request (chatsite/settings.py), so there is nothing to collect and an edited file
# shows on reload. Without it the production storage serves only what collectstatic put in
# STATIC_ROOT, hashed and compressed (django-environ's true values below).
case "${DJANGO_DEBUG,,}" in
  true | on | ok | y | yes | 1) ;;
  *) "$BIN/python" manage.py collectstatic --noinput >/dev/null ;;
esac
exec "$BIN/python" -m chatsite.server --bind "${HOST:-127.0.0.1}" --port "${PORT:-8000}"
