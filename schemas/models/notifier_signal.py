"""`NotifierSignal`: a tick or a delivery receipt for one notification group.

Mirrors `notifier_signal.v2.avsc` (v2 adds `notification_ids` and `projects` to receipts, so quality
gates know which notifications a flush settled; v1 receipts read with both empty).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from schemas.enums import NotifierSignalKind
from schemas.models._base import AvroInt, NonEmptyId, RecordModel, TopLevelRecord, UtcTimestamp


class DeliveryAttempt(RecordModel):
    """One attempt of one flush; `attempted_at` is kept so a re-logged attempt replaces itself."""

    number: AvroInt
    outcome: str
    http_status: AvroInt
    error: str
    latency_ms: float
    attempted_at: UtcTimestamp


class NotifierSignal(TopLevelRecord):
    """FLUSH_DUE from the grouping timer, DELIVERED / GAVE_UP from the sender."""

    avro_name: ClassVar[str] = "io.cipulse.NotifierSignal"

    kind: NotifierSignalKind
    group_key: NonEmptyId
    flush_id: str | None = None
    attempts: list[DeliveryAttempt] = Field(default_factory=list)
    reason: str = ""
    signalled_at: UtcTimestamp
    notification_ids: list[str] = Field(default_factory=list)
    """DELIVERED / GAVE_UP: every notification the flush carried (empty in v1 receipts and FLUSH_DUE)."""
    projects: list[str] = Field(default_factory=list)
    """DELIVERED / GAVE_UP: the distinct projects of those notifications, sorted."""
