"""Response bodies of the REST API as pydantic models: the OpenAPI document is generated
from them, and tests validate real responses against them, so spec and server agree."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from streams.build_state import BuildState


class ErrorBody(BaseModel):
    error: str
    """What is wrong and what to change."""


class BuildStateBody(BuildState):
    """Current state of a build as the build-state table holds it."""


class BuildHistoryEntry(BaseModel):
    seq: int
    event_id: str
    event_time: datetime
    scope: str
    stage_id: str
    task_id: str
    node_status: str
    build_status: str
    previous_build_status: str
    error_reason: str
    termination_reason: str


class BuildHistoryBody(BaseModel):
    build_id: str
    events: list[BuildHistoryEntry]


class PipelineStatsEntry(BaseModel):
    project: str
    pipeline: str | None = None
    finished: int
    succeeded: int
    failed: int
    canceled: int
    success_rate: float | None
    duration_p50_ms: float | None
    duration_p95_ms: float | None
    duration_p99_ms: float | None
    mean_queue_ms: float | None


class StatsBody(BaseModel):
    window_seconds: int
    since: datetime
    until: datetime
    rows: list[PipelineStatsEntry]


class HealthBody(BaseModel):
    status: str


class ReadinessBody(BaseModel):
    ready: bool
    checks: dict[str, bool]
    problems: list[str]
