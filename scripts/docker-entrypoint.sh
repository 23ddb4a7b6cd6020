#!/bin/sh
# Container entry point for web, worker and beat: optional migrations, a clean Prometheus
# multiprocess directory, then exec the command so it runs as PID 1 and receives SIGTERM.
set -eu

if [ "${MIGRATE_ON_START:-false}" = "true" ]; then
    python manage.py migrate --noinput
fi

if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
    # Emptied after migrate (which writes samples too): files left by earlier processes would be
    # added to this run's counters.
    find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -delete
fi

exec "$@"
