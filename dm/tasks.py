"""Celery tasks of dm: thin wrappers that call a service and own their retries (beat entries
"dm-purge-deliveries" and "dm-remind-low-prekeys"; docs/operations.md "Beat jobs")."""

from celery import shared_task
from django.conf import settings

from chatsite.time_budget import cleanup_task
from dm.services.messages import deliveries_purge
from dm.services.prekeys import prekey_reminders_send


@cleanup_task
def purge_deliveries() -> dict[str, int]:
    """TTL cleanup: acknowledged deliveries past retention, unacknowledged ones past expiry."""
    return deliveries_purge()


@shared_task(soft_time_limit=settings.JOB_SOFT_TIME_LIMIT_S)
def remind_low_prekeys() -> int:
    """`keys.low` to active devices whose one-time prekey pool is low, once per reminder interval."""
    return prekey_reminders_send()
