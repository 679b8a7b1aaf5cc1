"""The adapter delivery sink: keeps every request a CI adapter received in ClickHouse.

Reads adapter-deliveries in batches, writes `adapter_deliveries` rows (one insert per batch,
re-written whole after a failure; the replay read keeps one row per delivery key), and only then
lets the batch's offsets be committed. An undecodable record is dead-lettered, never skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, cast

import faust
from faust.types import StreamT, TopicT

from schemas import AdapterDelivery
from sinks.adapter_delivery_rows import ADAPTER_DELIVERIES_TABLE, AdapterDeliveryRow, write_adapter_deliveries
from sinks.gateway import ClickHouseGateway
from streams.dead_letter import DeadLetterPublisher
from streams.sink_agent import SinkHealth, write_until_accepted

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

    async def store_deliveries(stream: StreamT[Any]) -> None:
        async for events in cast("faust.Stream[Any]", stream).take_events(batch_size, within=flush_seconds):
            deliveries: list[Awaitable[Any]] = []
            rows: list[AdapterDeliveryRow] = []
            for event in events:
                delivery = await dead_letters.decode_or_reject(event, AdapterDelivery, deliveries)
                if delivery is not None:
                    rows.append(AdapterDeliveryRow.from_delivery(delivery))
            await asyncio.gather(*deliveries)
            if rows:
                await write_until_accepted(
                    gateway, health, retry_max_seconds,
                    lambda client, database: write_adapter_deliveries(client, database, rows),
                    rows={ADAPTER_DELIVERIES_TABLE: len(rows)},
                )

    app.agent(source, name=PROCESSOR)(store_deliveries)
