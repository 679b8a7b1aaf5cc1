"""Request/response models and OpenAPI descriptions of the HTTP ingest endpoints."""

from __future__ import annotations

from pydantic import BaseModel, RootModel

from schemas import BuildEvent
from streams import api_models as m
from streams.ingest import IngestProblem
from streams.openapi import Endpoint


class IngestBatchObject(BaseModel):
    events: list[BuildEvent]


class IngestBatchRequest(RootModel[list[BuildEvent] | IngestBatchObject]):
    """A JSON array of build events, or `{"events": [...]}`; at most CIPULSE_INGEST_MAX_BATCH of them."""


class IngestedEvent(BaseModel):
    """An event the broker acknowledged, and where it is: `topic[partition]@offset`."""

    event_id: str
    build_id: str
    partition: int
    offset: int


class IngestAccepted(BaseModel):
    accepted: int
    topic: str
    events: list[IngestedEvent]
    detail: str


class IngestInvalidBody(m.ErrorBody):
    """422: `error` lists every problem in one sentence; `problems` has them one by one."""

    problems: list[IngestProblem]


class IngestTooLargeBody(m.ErrorBody):
    """413: the body or batch is too large (`problems` empty), or events are too large to be one Kafka
    record each (`problems` names them, with their index in a batch)."""

    problems: list[IngestProblem] = []


class IngestNotAcknowledgedBody(m.ErrorBody):
    """503: Kafka did not acknowledge every event; exactly these were (and these were not)."""

    acknowledged: list[IngestedEvent]
    not_acknowledged: list[str]
    """Event ids to send again (re-sending an acknowledged event is harmless: same build and seq)."""


_COMMON: dict[int, tuple[str, type[BaseModel] | None]] = {
    401: ("No bearer token, or the token of no project (or ingest disabled: CIPULSE_INGEST_TOKENS unset)", m.ErrorBody),
    403: ("The token belongs to another project than an event's; the message names it", m.ErrorBody),
    413: (
        "Body larger than CIPULSE_INGEST_MAX_BODY_BYTES, more events than CIPULSE_INGEST_MAX_BATCH, or an event larger "
        "than CIPULSE_INGEST_MAX_EVENT_BYTES as one Kafka record (each listed in `problems`)",
        IngestTooLargeBody,
    ),
    422: ("Not JSON, or invalid events: every invalid field is listed (with its index in a batch)", IngestInvalidBody),
    503: ("Kafka did not acknowledge (all) events in time; the body says exactly which were", IngestNotAcknowledgedBody),
}

INGEST_ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "ingest_build",
        "/ingest/builds",
        "Send one build event as JSON (for systems that cannot speak Kafka); produced to build-events before 202",
        {202: ("Acknowledged by the broker: where the event is", IngestAccepted), **_COMMON},
        tags=("ingest",),
        method="post",
        request_body=BuildEvent,
        authenticated=True,
        auth_scheme="ingestToken",
    ),
    Endpoint(
        "ingest_builds_batch",
        "/ingest/builds/batch",
        "Send a batch of build events (JSON array or {\"events\": [...]}); all valid or nothing produced; 202 after every ack",
        {202: ("Every event acknowledged by the broker", IngestAccepted), **_COMMON},
        tags=("ingest",),
        method="post",
        request_body=IngestBatchRequest,
        authenticated=True,
        auth_scheme="ingestToken",
    ),
)
