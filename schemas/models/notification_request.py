"""`NotificationRequest`: one notification to deliver. Mirrors `notification_request.v2.avsc`.

v2 adds `branch` (a build's branch), so a quality gate of one branch counts only its own failures.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from schemas.enums import NotificationChannel, NotificationTransition
from schemas.models._base import AvroLong, NonEmptyId, TopLevelRecord, UtcTimestamp


class NotificationRequest(TopLevelRecord):
    """A notification for one subscription; `notification_id` is the delivery dedup key."""

    avro_name: ClassVar[str] = "io.cipulse.NotificationRequest"

    notification_id: NonEmptyId
    subscription_id: NonEmptyId
    subject_kind: str
    subject_id: NonEmptyId
    project: NonEmptyId
    pipeline: str | None = None
    transition: NotificationTransition
    status: str
    version: AvroLong
    channel: NotificationChannel
    title: str
    body: str
    links: dict[str, str] = Field(default_factory=dict)
    created_at: UtcTimestamp
    branch: str | None = None
    """BUILD subjects: the build's branch; None for audits, builds without one, and v1 requests."""
