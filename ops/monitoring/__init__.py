"""Monitoring as code: Prometheus alert rules (alerts.yml, unit tests in tests/), the Grafana
dashboard (dashboard.json), and the few metrics the alerts need that no app exports by itself
(docs/operations.md "Alerts")."""
