"""Response bodies of the REST API as pydantic models: the OpenAPI document is generated
from them, and tests validate real responses against them, so spec and server agree."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from sinks.queries import PipelineStats, ProjectStats
from sinks.rows import BuildEventRow
from streams.build_state import BuildState


class ErrorBody(BaseModel):
    error: str
    """What is wrong and what to change."""


class BuildStateBody(BuildState):
    """Current state of a build as the build-state table holds it."""


class BuildHistoryBody(BaseModel):
    build_id: str
    events: list[BuildEventRow]


class StatsWindow(BaseModel):
    window_seconds: int
    since: datetime
    until: datetime


class PipelineStatsBody(StatsWindow):
    rows: list[PipelineStats]


class ProjectStatsBody(StatsWindow):
    rows: list[ProjectStats]


class HealthBody(BaseModel):
    status: str


class ReadinessBody(BaseModel):
    ready: bool
    checks: dict[str, bool]
    problems: list[str]


BAD_REQUEST_RESPONSE: tuple[str, type[BaseModel]] = (
    "A query parameter is invalid; the message names it and says why",
    ErrorBody,
)
