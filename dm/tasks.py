"""Celery tasks of dm: thin wrappers that call a service and own their retries."""

from celery import shared_task

from dm.services.messages import deliveries_purge


@shared_task(autoretry_for=(Exception,), retry_backoff=True, max_retries=3)
def purge_deliveries() -> dict[str, int]:
    """TTL cleanup: acknowledged deliveries past retention, unacknowledged ones past expiry."""
    return deliveries_purge()
