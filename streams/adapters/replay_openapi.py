"""Request/response models and the OpenAPI declaration of POST /adapters/replay."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from streams import api_models as m
from streams.adapters.intake_openapi import AdapterRecord
from streams.openapi import Endpoint


class ReplayRequestBody(BaseModel):
    """Which stored deliveries to translate again; all filters are optional except the adapter."""

    model_config = ConfigDict(extra="forbid")

    adapter: str = Field(description="github, gitlab or cdevents")
    since: AwareDatetime | None = Field(default=None, description="Received at or after (ISO 8601 with offset)")
    until: AwareDatetime | None = Field(default=None, description="Received before (ISO 8601 with offset)")
    source: str | None = None
    event_type: str | None = None
    delivery_keys: list[str] = Field(default_factory=list, max_length=10_000)
    limit: int = Field(default=10_000, ge=1, le=100_000)
    dry_run: bool = Field(default=False, description="Only say what the deliveries translate to; produce nothing")


class ReplayedDeliveryBody(BaseModel):
    delivery: str
    event: str
    events: int
    subjects: list[str]
    unmappable: str | None = None


class ReplayAnswer(BaseModel):
    adapter: str
    dry_run: bool
    selected: int
    """Stored deliveries that matched (one per delivery key; pings are not counted)."""
    translated: int
    still_unmappable: int
    events: int
    produced: list[AdapterRecord]
    deliveries: list[ReplayedDeliveryBody]
    """At most the first 1,000, in arrival order."""
    received_from: datetime | None = None
    received_to: datetime | None = None
    detail: str


REPLAY_ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "adapter_replay",
        "/adapters/replay",
        "Translate stored CI adapter deliveries again with the current mapping and produce the events (idempotent: "
        "events that were right before are ignored downstream); still unmappable ones are listed, not re-dead-lettered",
        {
            200: ("What was translated and produced (or, with dry_run, would be)", ReplayAnswer),
            401: ("No or wrong CIPULSE_ADMIN_TOKEN bearer token", m.ErrorBody),
            413: ("Body too large", m.ErrorBody),
            422: ("The body is not a valid replay request; the message names each field", m.ErrorBody),
            503: ("ClickHouse could not be read, or Kafka did not acknowledge every event (replay again)", m.ErrorBody),
        },
        tags=("ingest",),
        method="post",
        request_body=ReplayRequestBody,
        authenticated=True,
    ),
)
