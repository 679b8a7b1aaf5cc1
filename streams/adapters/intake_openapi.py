"""Response models and OpenAPI declarations of POST /adapters/{github,gitlab,cdevents}."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from streams import api_models as m
from streams.openapi import Endpoint, Param


class AdapterPayload(BaseModel):
    """The CI system's own JSON body (see its webhook / CDEvents documentation)."""

    model_config = ConfigDict(extra="allow")


class AdapterRecord(BaseModel):
    """A translated event the broker acknowledged, and where it is: `topic[partition]@offset`."""

    event_id: str
    kind: Literal["build", "audit"]
    subject_id: str
    """The build id (build events) or audit id (audit events)."""
    topic: str
    partition: int
    offset: int


class AdapterAccepted(BaseModel):
    adapter: str
    delivery: str
    """The delivery's idempotency key (X-GitHub-Delivery, X-Gitlab-Event-UUID, CloudEvent source#id)."""
    source: str
    event: str
    outcome: Literal["accepted", "dead-lettered", "duplicate", "pong"]
    build_id: str | None = None
    audit_id: str | None = None
    topic: str | None = None
    events: list[AdapterRecord] = []
    detail: str


class AdapterNotAcknowledged(m.ErrorBody):
    """503: Kafka did not acknowledge every record; exactly these were (and these were not)."""

    acknowledged: list[AdapterRecord]
    not_acknowledged: list[str]


def adapter_endpoint(name: str, summary: str, auth: str, auth_scheme: str, bad_request: str) -> Endpoint:
    """One adapter's POST endpoint: the same answers for every adapter (`streams.adapters.intake`)."""
    return Endpoint(
        f"{name}_webhook",
        f"/adapters/{name}",
        summary + "; kept as received in ClickHouse adapter_deliveries (replay with `cipulse adapters replay`), "
        "translated and produced before 202; unmappable ones are dead-lettered",
        {
            200: ("A ping answered, or a delivery key already handled by this worker (nothing produced)", AdapterAccepted),
            202: ("Events acknowledged by the broker, or the delivery dead-lettered (`detail`: dead-lettered: <reason>)",
                  AdapterAccepted),
            400: (bad_request, m.ErrorBody),
            401: (auth, m.ErrorBody),
            413: ("Body larger than CIPULSE_INGEST_MAX_BODY_BYTES", m.ErrorBody),
            503: ("Kafka did not acknowledge in time; a redelivery is harmless", AdapterNotAcknowledged),
        },
        (Param("source", "query", "Which configured source's secret authenticates the request (optional with one)"),),
        tags=("ingest",),
        method="post",
        request_body=AdapterPayload,
        authenticated=True,
        auth_scheme=auth_scheme,
    )


ADAPTER_ENDPOINTS: tuple[Endpoint, ...] = (
    adapter_endpoint(
        "github",
        "GitHub webhook (workflow_run, workflow_job, pull_request_review, deployment_status; ping answered)",
        "Unsigned or mis-signed, or no secret configured for the source (CIPULSE_GITHUB_WEBHOOK_SECRETS)",
        "githubSignature",
        "X-GitHub-Event or X-GitHub-Delivery missing",
    ),
    adapter_endpoint(
        "gitlab",
        "GitLab CI webhook (Pipeline Hook, Job Hook)",
        "X-Gitlab-Token missing or wrong, or no token configured for the source (CIPULSE_GITLAB_WEBHOOK_SECRETS)",
        "gitlabToken",
        "X-Gitlab-Event or X-Gitlab-Event-UUID missing",
    ),
    adapter_endpoint(
        "cdevents",
        "CDEvents v0.5 as CloudEvents, binary (ce-* headers) or structured JSON (pipelineRun, taskRun, build, "
        "change reviewed/merged)",
        "Bearer token missing or wrong, or no token configured for the source (CIPULSE_CDEVENTS_TOKENS)",
        "cdeventsToken",
        "The CloudEvent has no id, source or type",
    ),
)

ADAPTER_SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "githubSignature": {
        "type": "apiKey", "in": "header", "name": "X-Hub-Signature-256",
        "description": "sha256=HMAC-SHA256(the source's secret from CIPULSE_GITHUB_WEBHOOK_SECRETS, body)",
    },
    "gitlabToken": {
        "type": "apiKey", "in": "header", "name": "X-Gitlab-Token",
        "description": "The source's secret token from CIPULSE_GITLAB_WEBHOOK_SECRETS",
    },
    "cdeventsToken": {
        "type": "http", "scheme": "bearer", "description": "The source's token from CIPULSE_CDEVENTS_TOKENS",
    },
}
