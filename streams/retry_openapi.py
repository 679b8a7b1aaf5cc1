"""Request/response models and OpenAPI descriptions of the retry endpoints."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from sinks.context_queries import RetryDecisionCount
from streams import api_models as m
from streams.openapi import PROJECT, WINDOW, Endpoint, Param


class RetentionBody(BaseModel):
    """The context table's retention, as ClickHouse reported it (never a hard-coded number)."""

    table: str
    ttl_seconds: float | None
    """None: the table has no TTL (or ClickHouse printed one cipulse cannot read: see ttl_problem)."""
    ttl_expression: str | None
    ttl_problem: str | None
    oldest_partition: str | None
    oldest_partition_start: datetime | None
    margin_seconds: float
    read_at: datetime


class RetryEligibilityBody(BaseModel):
    build_id: str
    eligible: bool
    reason: str
    """ELIGIBLE, NOT_FINAL, OUTSIDE_RETENTION or CONTEXT_EXPIRED."""
    message: str
    status: str | None
    first_seen_at: datetime | None
    age_seconds: float | None
    deadline: datetime | None
    """The last moment a retry is accepted: first seen + retention - margin."""
    context_present: bool
    retention: RetentionBody


class RetryRequestBody(BaseModel):
    """Why and by whom; both optional. Send `Idempotency-Key` to make a repeated POST the same retry."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2000)
    requested_by: str = Field(default="api", min_length=1, max_length=200)


class RetryAccepted(BaseModel):
    retry_id: str
    build_id: str
    topic: str
    deadline: datetime | None
    detail: str


class RetryDecisionsBody(m.StatsWindow):
    decisions: list[RetryDecisionCount]


BUILD_ID = Param("build_id", "path", "Build id", required=True)
SERVICE_DOWN = (503, ("ClickHouse or Kafka unavailable", m.ErrorBody))

RETRY_ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "retry_eligibility",
        "/builds/{build_id}/retry-eligibility",
        "Whether a build may be retried now, why not, the retention read from ClickHouse and the deadline",
        {
            200: ("The verdict (eligible or not, with the reason)", RetryEligibilityBody),
            404: ("Unknown build", m.ErrorBody),
            SERVICE_DOWN[0]: SERVICE_DOWN[1],
        },
        (BUILD_ID,),
        tags=("retries",),
    ),
    Endpoint(
        "retry_build",
        "/builds/{build_id}/retry",
        "Retry a finished build whose context is still retained: publishes a RetryRequest to Kafka",
        {
            202: ("Retry published to the retry-requests topic", RetryAccepted),
            401: ("Missing or wrong bearer token (or retries disabled: CIPULSE_ADMIN_TOKEN unset)", m.ErrorBody),
            404: ("Unknown build", m.ErrorBody),
            409: ("The build is not finished yet", m.ErrorBody),
            410: ("Too old: the retry deadline passed or its context is gone; the message says which and when", m.ErrorBody),
            422: ("Malformed body; the message lists every invalid field", m.ErrorBody),
            SERVICE_DOWN[0]: SERVICE_DOWN[1],
        },
        (BUILD_ID,),
        tags=("retries",),
        method="post",
        request_body=RetryRequestBody,
        authenticated=True,
    ),
    Endpoint(
        "retry_decisions",
        "/stats/retries",
        "Retry decisions (checks and requests) per verdict in the window, for the dashboard",
        {200: ("Decision counts", RetryDecisionsBody), 400: m.BAD_REQUEST_RESPONSE, SERVICE_DOWN[0]: SERVICE_DOWN[1]},
        (WINDOW, PROJECT),
        tags=("analytics",),
    ),
)
