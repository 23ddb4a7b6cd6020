from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        from django.contrib import admin

        # The admin index with a link to the staff dashboard (ops/dashboard) above the app list.
        admin.site.index_template = "admin/ops/index.html"

        from chatsite.metrics import register_state_collector
        from ops import jobs  # connects the Celery signals that record beat job runs

        register_state_collector(jobs.job_run_collector)

        from ops.integrity.metrics import state_collector as integrity_collector

        register_state_collector(integrity_collector)

        # Alert inputs (ops/monitoring): the connection limit as a gauge, every statement timed.
        from django.db.backends.signals import connection_created

        from ops.monitoring import collectors, db_timing

        register_state_collector(collectors.limits_collector)
        connection_created.connect(db_timing.install, dispatch_uid="ops.monitoring.db_timing")

        # The ban actions on the Users page (accounts cannot import ops or groups).
        from ops.remediations import admin as remediation_admin

        remediation_admin.register()
