"""`GateDecision`: a quality gate's decision when it changes. Mirrors `gate_decision.v1.avsc`."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from schemas.enums import GateResult
from schemas.models._base import NonEmptyId, RecordModel, SequenceNumber, TopLevelRecord, UtcTimestamp


class GateRuleFailure(RecordModel):
    """A rule that did not pass, with what was measured against what was required."""

    rule: NonEmptyId
    measured: str
    threshold: str
    message: str


class GateDecision(TopLevelRecord):
    """Published to gate-decisions keyed by `gate`; `decision_id` de-duplicates replays."""

    avro_name: ClassVar[str] = "io.cipulse.GateDecision"

    decision_id: NonEmptyId
    gate: NonEmptyId
    project: NonEmptyId
    pipeline: str | None = None
    branch: str | None = None
    result: GateResult
    previous_result: str | None = None
    failing: list[GateRuleFailure] = Field(default_factory=list)
    input_revision: SequenceNumber
    inputs: dict[str, str] = Field(default_factory=dict)
    decided_at: UtcTimestamp
