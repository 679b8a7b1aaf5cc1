"""The adapter delivery sink: keeps every request a CI adapter received in ClickHouse.

Reads adapter-deliveries in batches and writes `adapter_deliveries` rows through the shared
row sink (`streams.sink_agent.row_sink`: one insert per batch, re-written whole after a failure,
offsets acked only after; undecodable records dead-lettered). The replay read keeps one row per
delivery key, so a re-written batch changes nothing.
"""

from __future__ import annotations

import faust
from faust.types import TopicT

from schemas import AdapterDelivery
from sinks.adapter_delivery_rows import ADAPTER_DELIVERIES_TABLE, AdapterDeliveryRow, write_adapter_deliveries
from sinks.gateway import ClickHouseGateway
from streams.dead_letter import DeadLetterPublisher
from streams.sink_agent import SinkHealth, row_sink

PROCESSOR = "adapter-delivery-sink"


def register_delivery_sink(
    app: faust.App,
    *,
    source: TopicT,
    dead_letters: DeadLetterPublisher,
    gateway: ClickHouseGateway,
    health: SinkHealth,
    batch_size: int,
    flush_seconds: float,
    retry_max_seconds: float,
) -> None:
    """Attach the agent that stores adapter deliveries."""
    store = row_sink(
        AdapterDelivery, AdapterDeliveryRow.from_delivery, write_adapter_deliveries, ADAPTER_DELIVERIES_TABLE,
        dead_letters=dead_letters, gateway=gateway, health=health, batch_size=batch_size,
        flush_seconds=flush_seconds, retry_max_seconds=retry_max_seconds,
    )
    app.agent(source, name=PROCESSOR)(store)
