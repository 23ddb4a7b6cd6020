"""Operator reads of chatsite.api: the flags as stored (the truth every process converges to)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from chatsite.api import flags
from chatsite.api.models import FeatureFlag


@dataclass(frozen=True)
class FlagState:
    name: str  # GROUPS, STATUS, PRESENCE, E2EE_DM, MESSAGE_WRITE
    feature: str  # the key code uses: groups, status, presence, dm, message_write
    setting: str
    env_default: bool
    override: bool | None
    effective: bool
    source: str  # "override" or "environment"
    changed_by: str | None
    reason: str
    changed_at: datetime | None


def flag_states() -> list[FlagState]:
    rows = {row.name: row for row in FeatureFlag.objects.select_related("changed_by")}
    states = []
    for feature, flag in flags.FLAGS.items():
        row = rows.get(flag.name)
        default = flags.env_default(feature)
        states.append(
            FlagState(
                name=flag.name,
                feature=feature,
                setting=flag.setting,
                env_default=default,
                override=row.enabled if row else None,
                effective=row.enabled if row else default,
                source="override" if row else "environment",
                changed_by=row.changed_by.username if row and row.changed_by else None,
                reason=row.reason if row else "",
                changed_at=row.changed_at if row else None,
            )
        )
    return states
