"""The Celery app: worker and beat run `celery -A chatsite worker|beat`.

Without REDIS_URL, settings make tasks run eagerly in-process (embedded mode).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

app = Celery("chatsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
