"""`BuildStatusChange`: the change set the build-status agent publishes per accepted event.

Mirrors `build_status_change.v2.avsc`. It carries the build's header plus only what changed, so
sinks and notifiers can apply it without re-reading the build's state.
"""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import Field, model_validator

from schemas.enums import BuildScope, BuildStatus, TriggerReason
from schemas.models._base import (
    AvroInt,
    DurationMillis,
    NonEmptyId,
    RecordModel,
    SequenceNumber,
    TopLevelRecord,
    UtcTimestamp,
)


class NodeChange(RecordModel):
    """A stage or task whose state changed; nested in `BuildStatusChange.nodes`."""

    scope: BuildScope
    stage_id: NonEmptyId
    task_id: NonEmptyId | None = None
    name: str | None = None
    status: BuildStatus
    previous_status: BuildStatus | None = None
    started_at: UtcTimestamp | None = None
    finished_at: UtcTimestamp | None = None
    duration_ms: DurationMillis | None = None
    error_reason: str | None = None
    termination_reason: str | None = None
    exit_code: AvroInt | None = None

    @model_validator(mode="after")
    def _task_names_its_task(self) -> Self:
        if self.scope is BuildScope.TASK and self.task_id is None:
            raise ValueError("task_id is required when scope is TASK")
        return self


class BuildStatusChange(TopLevelRecord):
    """Build header after the change, the build-level fields that changed, and changed nodes."""

    avro_name: ClassVar[str] = "io.cipulse.BuildStatusChange"

    build_id: NonEmptyId
    project: NonEmptyId
    pipeline: NonEmptyId
    seq: SequenceNumber
    revision: SequenceNumber
    event_id: NonEmptyId
    event_time: UtcTimestamp
    status: BuildStatus
    previous_status: BuildStatus | None = None
    first_seen_at: UtcTimestamp
    queued_at: UtcTimestamp | None = None
    started_at: UtcTimestamp | None = None
    finished_at: UtcTimestamp | None = None
    duration_ms: DurationMillis | None = None
    trigger_reason: TriggerReason | None = None
    trigger_user: str | None = None
    branch: str | None = None
    error_reason: str | None = None
    termination_reason: str | None = None
    changed_fields: list[str] = Field(default_factory=list)
    nodes: list[NodeChange] = Field(default_factory=list)
    commit_sha: str | None = None
    executor: str | None = None
    environment: dict[str, str] = Field(default_factory=dict)
