import os

# Empty means off: prometheus_client would take a set-but-empty PROMETHEUS_MULTIPROC_DIR as
# multiprocess mode in the current directory (settings.py repeats this after reading .env).
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

from chatsite.celery import app as celery_app  # noqa: E402

__all__ = ["celery_app"]
