"""Integrity checks (issue 17): the runbooks' detection queries as one registry
(`registry.CHECKS`), run by Celery beat (`ops.tasks.run_integrity_checks`) and on demand
(`manage.py integrity_check`), exported as `integrity_violations{check}` (metrics.py).
docs/operations.md "Integrity checks" is generated from the registry (docs.py)."""
