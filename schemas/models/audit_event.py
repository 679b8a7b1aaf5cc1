"""`AuditEvent`: one step in the life of an audit (review / approval).

Mirrors `audit_event.v2.avsc`. Version 2 added `origin`: v1 payloads decode with
`origin=SOURCE`, which is what every v1 producer was.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from schemas.enums import AuditDecision, AuditEventKind, AuditEventOrigin, AuditSubjectKind
from schemas.models._base import NonEmptyId, SequenceNumber, TopLevelRecord, UtcTimestamp


class AuditEvent(TopLevelRecord):
    """An audit step; `seq` orders the events of one `audit_id`."""

    avro_name: ClassVar[str] = "io.cipulse.AuditEvent"

    event_id: NonEmptyId
    audit_id: NonEmptyId
    subject_kind: AuditSubjectKind
    subject_id: NonEmptyId
    project: NonEmptyId
    pipeline: str | None = None
    kind: AuditEventKind
    decision: AuditDecision | None = None
    decision_id: str | None = None
    actor: str | None = None
    reviewers: list[str] = Field(default_factory=list)
    reason: str | None = None
    seq: SequenceNumber
    event_time: UtcTimestamp
    origin: AuditEventOrigin = AuditEventOrigin.SOURCE
