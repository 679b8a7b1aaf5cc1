"""`AdapterDelivery`: one request a CI adapter received, kept for replay. Mirrors `adapter_delivery.v1.avsc`."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from schemas.models._base import NonEmptyId, TopLevelRecord, UtcTimestamp


class AdapterDelivery(TopLevelRecord):
    """Published to adapter-deliveries before the translation, so even unmappable requests are kept."""

    avro_name: ClassVar[str] = "io.cipulse.AdapterDelivery"

    adapter: NonEmptyId
    source: NonEmptyId
    delivery_key: NonEmptyId
    event_type: NonEmptyId
    headers: dict[str, str] = Field(default_factory=dict)
    body: bytes
    received_at: UtcTimestamp
