import os


def drop_empty_metrics_dir() -> None:
    """Empty means off: prometheus_client takes a set-but-empty PROMETHEUS_MULTIPROC_DIR as
    multiprocess mode in the current directory. Run here, before anything can import
    prometheus_client, and again by settings.py once it has read .env."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)


drop_empty_metrics_dir()

from chatsite.celery import app as celery_app  # noqa: E402

__all__ = ["celery_app", "drop_empty_metrics_dir"]
