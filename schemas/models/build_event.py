"""`BuildEvent`: one lifecycle fact about a build, a stage or a task, as a CI runner emits it.

Mirrors `build_event.v2.avsc`. Everything downstream (build-status state machine, ClickHouse
rows, notifications) is derived from these events, so the model rejects events that cannot be
placed in a build: a STAGE event without its stage, a TASK event without its stage and task.
"""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import Field, model_validator

from schemas.enums import BuildScope, BuildStatus, TriggerReason
from schemas.models._base import (
    DurationMillis,
    AvroInt,
    NonEmptyId,
    SequenceNumber,
    TopLevelRecord,
    UtcTimestamp,
)


class BuildEvent(TopLevelRecord):
    """One build, stage or task lifecycle event; `seq` orders the events of one build."""

    avro_name: ClassVar[str] = "io.cipulse.BuildEvent"

    event_id: NonEmptyId
    build_id: NonEmptyId
    project: NonEmptyId
    pipeline: NonEmptyId
    seq: SequenceNumber
    event_time: UtcTimestamp
    scope: BuildScope
    stage_id: NonEmptyId | None = None
    task_id: NonEmptyId | None = None
    name: str | None = None
    status: BuildStatus
    trigger_reason: TriggerReason | None = None
    trigger_user: str | None = None
    branch: str | None = None
    commit_sha: str | None = None
    environment: dict[str, str] = Field(default_factory=dict)
    executor: str | None = None
    error_reason: str | None = None
    termination_reason: str | None = None
    exit_code: AvroInt | None = None
    duration_ms: DurationMillis | None = None
    executor_labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _scope_names_its_node(self) -> Self:
        if self.scope in (BuildScope.STAGE, BuildScope.TASK) and self.stage_id is None:
            raise ValueError(f"stage_id is required when scope is {self.scope}")
        if self.scope is BuildScope.TASK and self.task_id is None:
            raise ValueError("task_id is required when scope is TASK")
        return self
