"""`AuditAlert`: an audit that needs a human. Mirrors `audit_alert.v1.avsc`."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from schemas.enums import AuditAlertKind
from schemas.models._base import AvroInt, NonEmptyId, TopLevelRecord, UtcTimestamp


class AuditAlert(TopLevelRecord):
    """Stuck in review, or decided but never synced; `alert_id` is the de-duplication key."""

    avro_name: ClassVar[str] = "io.cipulse.AuditAlert"

    alert_id: NonEmptyId
    audit_id: NonEmptyId
    kind: AuditAlertKind
    project: NonEmptyId
    pipeline: str | None = None
    subject_kind: str
    subject_id: str
    status: str
    episode: AvroInt
    decision_id: str | None = None
    age_seconds: float
    threshold_seconds: float
    reviewers: list[str] = Field(default_factory=list)
    reason: str
    links: dict[str, str] = Field(default_factory=dict)
    raised_at: UtcTimestamp
