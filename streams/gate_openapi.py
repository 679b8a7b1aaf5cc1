"""Response models and OpenAPI descriptions of the quality gate endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from streams import api_models as m
from streams.openapi import Endpoint, Param


class GateRuleFailureBody(BaseModel):
    rule: str
    """min_builds, latest_build_succeeded, success_rate, p95_duration, no_open_stuck_audit or
    no_unacknowledged_failure_notification."""
    measured: str
    threshold: str
    message: str


class GateDecisionBody(BaseModel):
    """A gate's decision. A configured gate that has decided nothing yet is PENDING with null ids."""

    gate: str
    project: str
    pipeline: str | None
    branch: str | None
    result: Literal["PASS", "FAIL", "PENDING"]
    """BK-CI vocabulary: PASS, FAIL (a consumer INTERCEPTs on it), PENDING (BK-CI WAIT)."""
    previous_result: str | None = None
    failing: list[GateRuleFailureBody]
    """FAIL: every failing rule with its measured value; PENDING: what the gate waits for."""
    decided_at: datetime | None
    decision_id: str | None
    """sha256 of (gate, result, failing rules, input revision): stable under replay."""
    input_revision: int | None = None
    inputs: dict[str, str] = Field(default_factory=dict)
    """What was measured: builds_in_window, latest_status, success_rate, p95_duration_s, open_stuck_audits..."""


class GatesBody(BaseModel):
    gates: list[GateDecisionBody]


class GateHistoryBody(BaseModel):
    gate: str
    decisions: list[GateDecisionBody]
    """Newest first."""


GATE = Param("gate", "path", "Gate id from the gates file", required=True)
SERVICE_DOWN = (503, ("ClickHouse unavailable", m.ErrorBody))
BAD_REQUEST = (400, ("A query parameter is invalid; the message names it and says why", m.ErrorBody))

GATE_ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "gates",
        "/gates",
        "Current decision of every configured quality gate (PENDING with null ids until its first decision)",
        {200: ("One decision per gate, by gate id", GatesBody), BAD_REQUEST[0]: BAD_REQUEST[1], SERVICE_DOWN[0]: SERVICE_DOWN[1]},
        tags=("gates",),
    ),
    Endpoint(
        "gate",
        "/gates/{gate}",
        "Current decision of one quality gate",
        {
            200: ("The gate's current decision", GateDecisionBody),
            BAD_REQUEST[0]: BAD_REQUEST[1],
            404: ("No gate with this id in the gates file", m.ErrorBody),
            SERVICE_DOWN[0]: SERVICE_DOWN[1],
        },
        (GATE,),
        tags=("gates",),
    ),
    Endpoint(
        "gate_history",
        "/gates/{gate}/history",
        "Decisions of one quality gate, newest first (from ClickHouse; only changes are decisions)",
        {
            200: ("The gate's decisions", GateHistoryBody),
            BAD_REQUEST[0]: BAD_REQUEST[1],
            404: ("No gate with this id in the gates file", m.ErrorBody),
            SERVICE_DOWN[0]: SERVICE_DOWN[1],
        },
        (GATE, Param("limit", "query", "Most decisions to return, 1-1000 (default 100)")),
        tags=("gates",),
    ),
)
