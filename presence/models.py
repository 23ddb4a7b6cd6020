"""Presence: one row per user (seed 000 "4. Presence Issues": table `user_presence` with
`user_id`, `last_seen_at`, `device_online`, `privacy_settings` JSON).

Liveness itself lives in Redis (presence/liveness.py); this row holds what must survive Redis:
the privacy settings, the last flushed `last_seen_at` and whether any device is online.
`privacy_settings` keys: `share_last_seen` and `share_online` (everyone | contacts | nobody) and
`read_receipts` (bool) — the status app reads `privacy_settings->>'read_receipts'` by raw SQL.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

EVERYONE = "everyone"
CONTACTS = "contacts"
NOBODY = "nobody"
AUDIENCES = (EVERYONE, CONTACTS, NOBODY)


def default_privacy() -> dict:
    return {"share_last_seen": EVERYONE, "share_online": EVERYONE, "read_receipts": True}


class UserPresence(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        primary_key=True,
        on_delete=models.CASCADE,
        related_name="presence",
        db_column="user_id",
    )
    last_seen_at = models.DateTimeField(null=True, blank=True)
    device_online = models.BooleanField(default=False)
    privacy_settings = models.JSONField(default=default_privacy, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "user_presence"
        indexes = [
            # Only users shown online: the sweep's and the stuck-online integrity check's scan.
            models.Index(
                fields=["last_seen_at"],
                name="user_presence_online_seen_idx",
                condition=models.Q(device_online=True),
            ),
        ]
        verbose_name = "user presence"
        verbose_name_plural = "user presence"

    def __str__(self) -> str:
        return f"presence of {self.user_id}"

    def privacy(self) -> dict:
        merged = default_privacy()
        merged.update({k: v for k, v in (self.privacy_settings or {}).items() if k in merged})
        return merged
