"""Operator state that every process reads: feature-flag overrides and circuit-breaker resets.

Both tables are tiny (one row per flag / per dependency) and are read in full by each process's
refresher thread every FEATURE_FLAG_REFRESH_S (chatsite/api/flags.py); nothing reads them per
request.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

FLAG_NAMES = ("GROUPS", "STATUS", "PRESENCE", "E2EE_DM", "MESSAGE_WRITE")
DEPENDENCIES = ("database", "redis")


class FeatureFlag(models.Model):
    """A runtime override of one flag; no row means the environment's value (the setting)."""

    name = models.CharField(primary_key=True, max_length=32)
    enabled = models.BooleanField()
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=200, blank=True)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "feature_flags"
        constraints = [
            # A typo in a runbook command must not create a flag nothing reads.
            models.CheckConstraint(condition=models.Q(name__in=FLAG_NAMES), name="feature_flags_known_name"),
        ]

    def __str__(self) -> str:
        return f"{self.name}={'on' if self.enabled else 'off'}"


class CircuitBreakerReset(models.Model):
    """A reset generation per dependency: bumping it resets that breaker in every process (each
    refresher sees the new generation within FEATURE_FLAG_REFRESH_S)."""

    dependency = models.CharField(primary_key=True, max_length=16)
    generation = models.PositiveBigIntegerField(default=0)
    reset_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reset_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "circuit_breaker_resets"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(dependency__in=DEPENDENCIES),
                name="circuit_breaker_resets_known_dependency",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.dependency} reset #{self.generation}"
