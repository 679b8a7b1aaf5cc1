"""Request/response models and OpenAPI descriptions of the audit (review) endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sinks.audit_queries import AuditTimeline, OpenAudit, OpenAuditAgeCount, RepairsPerDay, ReviewTimeStats
from streams import api_models as m
from streams.audit_state import AuditState
from streams.openapi import PROJECT, WINDOW, Endpoint, Param


class AuditStateBody(AuditState):
    """Live state of an audit as the audit-state table holds it."""


class OpenAuditEntry(BaseModel):
    audit: OpenAudit
    stuck: bool
    """Older than the stuck threshold of its project."""
    threshold_seconds: float


class OpenAuditsBody(BaseModel):
    now: datetime
    audits: list[OpenAuditEntry]


class AuditTimelineBody(BaseModel):
    timeline: AuditTimeline


class AuditStatsBody(BaseModel):
    window_seconds: int
    open_by_age: list[OpenAuditAgeCount]
    time_in_review: list[ReviewTimeStats]
    repairs_per_day: list[RepairsPerDay]


class RepairRequest(BaseModel):
    """What an operator asks: move the audit to `target_status`, and why."""

    model_config = ConfigDict(extra="forbid")

    target_status: Literal["REQUESTED", "TIMED_OUT", "CANCELED", "REPAIRED"]
    reason: str = Field(min_length=3, max_length=2000)
    actor: str = Field(min_length=1, max_length=200)


class RepairAccepted(BaseModel):
    audit_id: str
    event_id: str
    target_status: str
    detail: str


AUDIT_ID = Param("audit_id", "path", "Audit id", required=True)
SERVICE_DOWN = (503, ("ClickHouse unavailable", m.ErrorBody))

AUDIT_ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "list_open_audits",
        "/audits",
        "Open audits (not final), oldest first, each marked stuck when past its project's threshold",
        {200: ("Open audits", OpenAuditsBody), 400: m.BAD_REQUEST_RESPONSE, SERVICE_DOWN[0]: SERVICE_DOWN[1]},
        (
            PROJECT,
            Param("min_age", "query", "Only audits open at least this long (e.g. 1h)"),
            Param("stuck", "query", "true: only stuck audits; false: only the others"),
            Param("limit", "query", "Most audits to return, 1-10000 (default 1000)"),
        ),
        tags=("audits",),
    ),
    Endpoint(
        "audit_state",
        "/audits/{audit_id}",
        "Live state of an audit (served by the worker owning the key)",
        {200: ("Current state", AuditStateBody), 404: ("Unknown audit", m.ErrorBody)},
        (AUDIT_ID,),
        tags=("audits",),
    ),
    Endpoint(
        "audit_timeline",
        "/audits/{audit_id}/timeline",
        "Accepted events, repairs and alerts of an audit (from ClickHouse)",
        {200: ("Timeline", AuditTimelineBody), 404: ("No history for this audit", m.ErrorBody),
         SERVICE_DOWN[0]: SERVICE_DOWN[1]},
        (AUDIT_ID,),
        tags=("audits",),
    ),
    Endpoint(
        "repair_audit",
        "/audits/{audit_id}/repair",
        "Manual repair: validated against the audit state machine, applied through Kafka, recorded with who/when/why",
        {
            202: ("Repair published; it shows in the state once the agent applied it", RepairAccepted),
            400: ("The state machine forbids this repair; the message names the rule", m.ErrorBody),
            401: ("Missing or wrong bearer token (or repairs disabled: CIPULSE_ADMIN_TOKEN unset)", m.ErrorBody),
            404: ("Unknown audit", m.ErrorBody),
            422: ("Malformed body; the message lists every invalid field", m.ErrorBody),
        },
        (AUDIT_ID,),
        tags=("audits",),
        method="post",
        request_body=RepairRequest,
        authenticated=True,
    ),
    Endpoint(
        "audit_stats",
        "/stats/audits",
        "Open audits by age bucket, time in review per project, repairs per day",
        {200: ("Audit figures", AuditStatsBody), 400: m.BAD_REQUEST_RESPONSE, SERVICE_DOWN[0]: SERVICE_DOWN[1]},
        (WINDOW, PROJECT),
        tags=("analytics",),
    ),
)
