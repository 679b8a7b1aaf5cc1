"""Response models and OpenAPI descriptions of the REST callback endpoints."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from sinks.callback_queries import CallbackDeliverySummary
from sinks.callback_rows import STATUS_DISABLED, CallbackDeliveryRow, CallbackSubscriptionRow
from streams import api_models as m
from streams.callback_subscriptions import CallbackCreate
from streams.openapi import PROJECT, Endpoint, Param


class CallbackBody(BaseModel):
    """A callback subscription (never its secret) and what its delivery log says."""

    callback_id: str
    url: str
    project: str
    pipeline: str | None
    """None: every pipeline of the project."""
    events: list[str]
    signed: bool
    """True when deliveries carry `X-Cipulse-Signature-256` (a secret was given)."""
    status: str
    """active, disabled or deleted."""
    status_reason: str
    status_changed_at: datetime
    disabled_at: datetime | None
    created_at: datetime
    delivered: int
    failed_attempts: int
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_error: str | None
    failing_since: datetime | None
    """First failed attempt after the last acknowledged one: the streak the disable rule measures."""

    @classmethod
    def of(cls, row: CallbackSubscriptionRow, summary: CallbackDeliverySummary | None) -> CallbackBody:
        return cls(
            callback_id=row.callback_id,
            url=row.url,
            project=row.project,
            pipeline=row.pipeline or None,
            events=list(row.events),
            signed=bool(row.secret),
            status=row.status,
            status_reason=row.status_reason,
            status_changed_at=row.status_changed_at,
            disabled_at=row.status_changed_at if row.status == STATUS_DISABLED else None,
            created_at=row.created_at,
            delivered=summary.delivered if summary else 0,
            failed_attempts=summary.failed_attempts if summary else 0,
            last_success_at=summary.last_success_at if summary else None,
            last_failure_at=summary.last_failure_at if summary else None,
            last_error=summary.last_error if summary else None,
            failing_since=summary.failing_since if summary else None,
        )


class CallbackListBody(BaseModel):
    callbacks: list[CallbackBody]


class CallbackDeliveriesBody(BaseModel):
    """The newest logged attempts of one callback, newest first."""

    callback_id: str
    attempts: list[CallbackDeliveryRow]


CALLBACK_ID = Param("callback_id", "path", "Callback id (as returned by POST /callbacks)", required=True)
SERVICE_DOWN = (503, ("ClickHouse unavailable", m.ErrorBody))
UNAUTHORIZED = (401, ("Missing or wrong bearer token (or callbacks read-only: CIPULSE_ADMIN_TOKEN unset)", m.ErrorBody))
NOT_FOUND = (404, ("No such callback (or it was deleted)", m.ErrorBody))
TAGS = ("callbacks",)

CALLBACK_ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "list_callbacks",
        "/callbacks",
        "Callback subscriptions (active and disabled) with their delivery health",
        {200: ("Callbacks", CallbackListBody), 400: m.BAD_REQUEST_RESPONSE, SERVICE_DOWN[0]: SERVICE_DOWN[1]},
        (PROJECT,),
        tags=TAGS,
    ),
    Endpoint(
        "create_callback",
        "/callbacks",
        "Subscribe a URL to build/stage/task start and finish events of a project (optionally one pipeline); "
        "send `Idempotency-Key` to make a repeated POST the same callback",
        {
            201: ("Created (or the existing callback of the same Idempotency-Key)", CallbackBody),
            UNAUTHORIZED[0]: UNAUTHORIZED[1],
            422: ("Malformed body; the message lists every invalid field", m.ErrorBody),
            SERVICE_DOWN[0]: SERVICE_DOWN[1],
        },
        tags=TAGS,
        method="post",
        request_body=CallbackCreate,
        authenticated=True,
    ),
    Endpoint(
        "get_callback",
        "/callbacks/{callback_id}",
        "One callback subscription with its status and delivery health",
        {200: ("The callback", CallbackBody), NOT_FOUND[0]: NOT_FOUND[1], SERVICE_DOWN[0]: SERVICE_DOWN[1]},
        (CALLBACK_ID,),
        tags=TAGS,
    ),
    Endpoint(
        "delete_callback",
        "/callbacks/{callback_id}",
        "Delete a callback: events not yet delivered to it are not attempted",
        {
            200: ("Deleted; the body is its last state", CallbackBody),
            UNAUTHORIZED[0]: UNAUTHORIZED[1],
            NOT_FOUND[0]: NOT_FOUND[1],
            SERVICE_DOWN[0]: SERVICE_DOWN[1],
        },
        (CALLBACK_ID,),
        tags=TAGS,
        method="delete",
        authenticated=True,
    ),
    Endpoint(
        "enable_callback",
        "/callbacks/{callback_id}/enable",
        "Re-enable a disabled callback (its failure streak starts afresh); an active one stays as it is",
        {
            200: ("Active", CallbackBody),
            UNAUTHORIZED[0]: UNAUTHORIZED[1],
            NOT_FOUND[0]: NOT_FOUND[1],
            SERVICE_DOWN[0]: SERVICE_DOWN[1],
        },
        (CALLBACK_ID,),
        tags=TAGS,
        method="post",
        authenticated=True,
    ),
    Endpoint(
        "callback_deliveries",
        "/callbacks/{callback_id}/deliveries",
        "Delivery history of a callback: every attempt (delivered, retry, gave_up) and skipped event, newest first",
        {
            200: ("Logged attempts", CallbackDeliveriesBody),
            400: m.BAD_REQUEST_RESPONSE,
            NOT_FOUND[0]: NOT_FOUND[1],
            SERVICE_DOWN[0]: SERVICE_DOWN[1],
        },
        (CALLBACK_ID, Param("limit", "query", "Most attempts to return, 1-1000 (default 100)")),
        tags=TAGS,
    ),
)
