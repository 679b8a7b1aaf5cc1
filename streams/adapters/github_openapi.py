"""Response model and OpenAPI declaration of POST /adapters/github."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from streams import api_models as m
from streams.ingest_openapi import IngestedEvent, IngestNotAcknowledgedBody
from streams.openapi import Endpoint, Param


class GitHubWebhookPayload(BaseModel):
    """A GitHub webhook body (workflow_run or workflow_job; see GitHub's webhook documentation)."""

    model_config = ConfigDict(extra="allow")

    action: str | None = None


class GitHubWebhookAccepted(BaseModel):
    delivery: str
    """The X-GitHub-Delivery id (the idempotency key)."""
    source: str
    event: str
    outcome: Literal["accepted", "dead-lettered", "duplicate", "pong"]
    build_id: str | None = None
    topic: str | None = None
    events: list[IngestedEvent] = []
    detail: str


GITHUB_ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "github_webhook",
        "/adapters/github",
        "GitHub Actions webhook (workflow_run, workflow_job): verified with X-Hub-Signature-256, mapped to build "
        "events and produced before 202; unmappable ones are dead-lettered",
        {
            200: ("ping answered, or a delivery id already handled by this worker (nothing produced)", GitHubWebhookAccepted),
            202: ("Events acknowledged by the broker, or the webhook dead-lettered (`detail`: dead-lettered: <reason>)",
                  GitHubWebhookAccepted),
            400: ("X-GitHub-Event or X-GitHub-Delivery missing", m.ErrorBody),
            401: ("Unsigned or mis-signed, or no secret configured for the source (CIPULSE_GITHUB_WEBHOOK_SECRETS)", m.ErrorBody),
            413: ("Body larger than CIPULSE_INGEST_MAX_BODY_BYTES", m.ErrorBody),
            503: ("Kafka did not acknowledge in time; GitHub's redelivery is harmless", IngestNotAcknowledgedBody),
        },
        (Param("source", "query", "Which CIPULSE_GITHUB_WEBHOOK_SECRETS entry signs the webhook (optional with one)"),),
        tags=("ingest",),
        method="post",
        request_body=GitHubWebhookPayload,
        authenticated=True,
        auth_scheme="githubSignature",
    ),
)
