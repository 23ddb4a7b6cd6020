"""Status posts: 24-hour posts to a materialised audience (docs/status.md).

Tables and columns are the ones seed 000's runbook SQL uses: status_posts (id UUID,
owner_user_id, created_at, expires_at, audience_mode, post_epoch), status_audience (post_id,
viewer_user_id) and status_views (post_id, viewer_user_id, viewed_at). The server stores an opaque
ciphertext or a media reference plus metadata only; it never reads them.

The audience is materialised at post time (one status_audience row per viewer): a contact added
later does not widen an old post. Audience and views go with their post (CASCADE: the owner's
delete and the expiry cleanup remove them in the same transaction).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class AudienceMode(models.TextChoices):
    CONTACTS = "contacts"
    CONTACTS_EXCEPT = "contacts_except"
    ONLY = "only"


class StatusPost(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="status_posts",
        db_column="owner_user_id",
    )
    # Either an opaque ciphertext or a media reference (plus its metadata), never both.
    ciphertext = models.TextField(blank=True, default="")
    media_ref = models.CharField(max_length=512, blank=True, default="")
    media_meta = models.JSONField(default=dict, blank=True)
    audience_mode = models.CharField(max_length=16, choices=AudienceMode.choices)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    # Bumped by every audience edit: clients re-key the post for the new audience.
    post_epoch = models.BigIntegerField(default=1)

    class Meta:
        db_table = "status_posts"
        constraints = [
            models.CheckConstraint(
                condition=Q(audience_mode__in=["contacts", "contacts_except", "only"]),
                name="ck_status_posts_audience_mode",
            ),
            models.CheckConstraint(condition=Q(post_epoch__gte=1), name="ck_status_posts_epoch"),
            models.CheckConstraint(
                condition=(~Q(ciphertext="") & Q(media_ref="")) | (Q(ciphertext="") & ~Q(media_ref="")),
                name="ck_status_posts_one_content",
            ),
        ]
        indexes = [
            models.Index(fields=["owner", "created_at"], name="status_posts_owner_created"),
            models.Index(fields=["expires_at"], name="status_posts_expires_at"),
        ]

    def __str__(self) -> str:
        return f"status {self.id} of {self.owner_id}"


class StatusAudience(models.Model):
    id = models.BigAutoField(primary_key=True)
    post = models.ForeignKey(StatusPost, on_delete=models.CASCADE, related_name="audience")
    viewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_column="viewer_user_id"
    )

    class Meta:
        db_table = "status_audience"
        constraints = [
            models.UniqueConstraint(fields=["post", "viewer"], name="uq_status_audience_post_viewer"),
        ]
        indexes = [models.Index(fields=["viewer", "post"], name="status_audience_viewer_idx")]

    def __str__(self) -> str:
        return f"{self.viewer_id} may see {self.post_id}"


class StatusView(models.Model):
    id = models.BigAutoField(primary_key=True)
    post = models.ForeignKey(StatusPost, on_delete=models.CASCADE, related_name="views")
    viewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_column="viewer_user_id"
    )
    viewed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "status_views"
        constraints = [
            models.UniqueConstraint(fields=["post", "viewer"], name="uq_status_views_post_viewer"),
        ]

    def __str__(self) -> str:
        return f"{self.viewer_id} viewed {self.post_id}"
