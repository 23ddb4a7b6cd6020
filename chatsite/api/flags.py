"""Feature flags: one place that says which flag guards which feature and what a client is told.

Flags are settings read from the environment (seed 000 "Hotfix Rollback"); they are read at call
time so a test's override_settings, or a restart with a new environment, takes effect.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from rest_framework.permissions import BasePermission

from chatsite.api.errors import ApiError


@dataclass(frozen=True)
class Flag:
    setting: str
    disabled_detail: str


FLAGS: dict[str, Flag] = {
    "dm": Flag("E2EE_DM_ENABLED", "E2EE DM is not enabled"),
    "groups": Flag("GROUPS_ENABLED", "Groups are not enabled"),
    "status": Flag("STATUS_ENABLED", "Status is not enabled"),
    "presence": Flag("PRESENCE_ENABLED", "Presence is not enabled"),
}


def is_enabled(feature: str) -> bool:
    return bool(getattr(settings, FLAGS[feature].setting))


def require_feature(feature: str) -> None:
    if not is_enabled(feature):
        raise ApiError("FEATURE_DISABLED", FLAGS[feature].disabled_detail, feature=feature)


def feature_permission(feature: str) -> type[BasePermission]:
    """A DRF permission class: put it first in a view's permission_classes."""

    class FeatureEnabled(BasePermission):
        def has_permission(self, request, view) -> bool:
            require_feature(feature)
            return True

    FeatureEnabled.__name__ = f"FeatureEnabled_{feature}"
    return FeatureEnabled
